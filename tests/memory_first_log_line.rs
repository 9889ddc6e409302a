//! On the memory backend a worker's first log line says where the jobs live. A test
//! binary of its own: tracing caches whether a log line is wanted per call site, and a
//! worker started on another thread without a subscriber could hide it from this one.

#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use haul::prelude::*;
use tracing_subscriber::util::SubscriberInitExt;

/// Log lines written by the worker, for one thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread, so the log capture sees every task of the worker.
#[tokio::test(flavor = "current_thread")]
async fn on_the_memory_backend_the_first_log_line_says_jobs_live_in_this_process_only() {
    let captured = Captured::default();
    let writer = captured.clone();
    let _logging = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).set_default();

    let storage = MemoryStorage::new();
    Worker::builder(storage).queues(["first_log_line"]).build().run_until(std::future::ready(())).await.unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let first = logs.lines().next().unwrap_or_default();
    assert!(first.contains("jobs live in this process only"), "{logs}");
    assert!(first.contains("other processes, and this process after a restart, do not see them"), "{logs}");
}
