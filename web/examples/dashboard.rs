//! The dashboard mounted under `/admin` of an application, over a memory storage
//! holding jobs in every state, a worker, a schedule and an hour of throughput.
//!
//! ```sh
//! cargo run -p haul-web --example dashboard            # then open http://127.0.0.1:8080/admin
//! cargo run -p haul-web --example dashboard -- --smoke # serves one request to itself and exits
//! ```

use std::{sync::Arc, time::Duration};

use axum::{Router, routing::get};
use chrono::{TimeDelta, Utc};
use haul::{
    JobOutcome, MemoryStorage, NewJob, RunAt, Storage,
    storage::{
        ClaimParams, EnqueueParams, LeadershipParams, PeriodicUpdate, Report, ReportParams, ThroughputSample,
        WorkerBeat,
    },
};
use haul_web::Dashboard;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let smoke = std::env::args().any(|arg| arg == "--smoke");
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    fill(&storage).await?;

    let app = Router::new()
        .route("/", get(|| async { "The application. The dashboard is at /admin" }))
        .nest("/admin", Dashboard::new(storage.clone()).router());
    let bind = if smoke { "127.0.0.1:0" } else { "127.0.0.1:8080" };
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    println!("the dashboard is at http://{addr}/admin");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    if smoke {
        let response = fetch(addr, "/admin").await?;
        let status = response.lines().next().unwrap_or_default().to_owned();
        println!("GET /admin: {status}");
        let _ = stop.send(());
        server.await??;
        if !status.starts_with("HTTP/1.1 200") || !response.contains("id=\"queues\"") {
            return Err(format!("the dashboard did not answer as expected: {status}").into());
        }
        return Ok(());
    }
    haul::shutdown_signal().await;
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// One HTTP/1.1 GET over a fresh connection: the raw response.
async fn fetch(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

/// Jobs in every state on three queues, a live worker that leads, a schedule and a
/// paused queue.
async fn fill(storage: &Arc<dyn Storage>) -> haul::Result<()> {
    let mail =
        |n: u32| NewJob::new("mail.send", json!({ "to": format!("user{n}@example.com"), "template": "welcome" }));
    for n in 0..8 {
        enqueue(storage, mail(n).queue("mail").metadata("tenant", "acme")).await?;
    }
    // Run some: complete a few, fail a few for good, one to retry later, one running.
    let claimed = storage.claim(ClaimParams::new(["mail"], 6).worker_id("worker-1")).await?;
    let mut reports = Vec::new();
    for (index, job) in claimed.iter().enumerate() {
        let outcome = match index {
            0..=2 => JobOutcome::Completed,
            3 => {
                JobOutcome::Failed { error: "smtp: 550 mailbox unavailable".into(), retry_in: Duration::from_secs(600) }
            }
            4 => continue, // still running
            _ => JobOutcome::Discarded { reason: "address bounced permanently".into() },
        };
        if let Some(claim) = job.claim() {
            reports.push(Report { claim, outcome });
        }
    }
    storage.report(ReportParams::new(reports)).await?;
    for n in 0..3 {
        let job = NewJob::new("report.build", json!({ "month": format!("2030-0{}", n + 1) })).queue("reports");
        enqueue(storage, job.max_attempts(1)).await?;
    }
    let claimed = storage.claim(ClaimParams::new(["reports"], 1).worker_id("worker-1")).await?;
    let reports = claimed
        .iter()
        .filter_map(|job| job.claim())
        .map(|claim| Report {
            claim,
            outcome: JobOutcome::Failed { error: "timeout after 30s".into(), retry_in: Duration::ZERO },
        })
        .collect();
    storage.report(ReportParams::new(reports)).await?;
    let later = NewJob::new("cleanup.run", json!({})).queue("maintenance").run_at(RunAt::In(Duration::from_secs(3600)));
    enqueue(storage, later).await?;
    storage.pause_queue("reports").await?;

    let now = Utc::now();
    let beat = WorkerBeat::new("worker-1", now, Duration::from_secs(3600))
        .process("app-host-1", std::process::id())
        .serving(vec!["mail".into(), "reports".into(), "maintenance".into()], 8)
        .held(1);
    storage.beat_worker(beat).await?;
    storage.acquire_leadership(LeadershipParams::new("worker-1", Duration::from_secs(3600))).await?;
    storage.save_periodic(PeriodicUpdate::new("nightly-cleanup", "cron \"0 3 * * *\" in UTC").next_tick(now)).await?;
    let samples = (0..60_i64)
        .map(|minute| {
            let at = now - TimeDelta::minutes(minute);
            let wave = u64::try_from((minute * 7) % 23).unwrap_or(0);
            ThroughputSample::new("mail", at, 20 + wave, wave / 6)
        })
        .collect();
    storage.record_throughput(samples, None).await?;
    Ok(())
}

/// Enqueues one job.
async fn enqueue(storage: &Arc<dyn Storage>, job: NewJob) -> haul::Result<()> {
    storage.enqueue(EnqueueParams::new(vec![job])).await.map(drop)
}
