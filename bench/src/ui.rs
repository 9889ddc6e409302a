//! Progress bars (indicatif) on standard error; hidden when it is not a terminal.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

/// The bars of one run.
pub(crate) struct Ui {
    multi: MultiProgress,
    style: ProgressStyle,
}

impl Ui {
    /// Bars drawn on standard error.
    pub(crate) fn new() -> Self {
        let style = ProgressStyle::with_template("{prefix:<44} [{bar:30}] {pos:>7}/{len:7} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        Self { multi: MultiProgress::new(), style }
    }

    /// A bar for `len` units of `backend`'s `workload`, counted by a fresh counter.
    pub(crate) fn bar(&self, backend: &str, workload: &str, len: usize) -> Bar {
        self.bar_on(backend, workload, len, Arc::new(AtomicUsize::new(0)))
    }

    /// A bar for `len` units of `backend`'s `workload`, following `counter`.
    pub(crate) fn bar_on(&self, backend: &str, workload: &str, len: usize, counter: Arc<AtomicUsize>) -> Bar {
        let bar = self.multi.add(ProgressBar::new(len as u64));
        bar.set_style(self.style.clone());
        bar.set_prefix(format!("{backend} {workload}"));
        let ticker = tokio::spawn({
            let bar = bar.clone();
            let counter = Arc::clone(&counter);
            async move {
                loop {
                    bar.set_position(counter.load(Ordering::Relaxed) as u64);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Bar { bar, counter, ticker }
    }
}

/// One bar, updated from its counter by a background task.
pub(crate) struct Bar {
    bar: ProgressBar,
    counter: Arc<AtomicUsize>,
    ticker: JoinHandle<()>,
}

impl Bar {
    /// The counter the bar follows.
    pub(crate) fn counter(&self) -> &AtomicUsize {
        &self.counter
    }

    /// The counter the bar follows, to share with tasks.
    pub(crate) fn counter_arc(&self) -> &Arc<AtomicUsize> {
        &self.counter
    }

    /// Stops the bar and shows the rate.
    pub(crate) fn finish(self, done: usize, elapsed: Duration) {
        self.ticker.abort();
        self.bar.set_position(done as u64);
        self.bar.finish_with_message(format!("{:.0} jobs/s", done as f64 / elapsed.as_secs_f64().max(f64::EPSILON)));
    }

    /// Stops the bar and removes it.
    pub(crate) fn clear(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}
