//! `haul-bench`: measures haul's backends and prints a table (and JSON with `--json`).
//!
//! ```text
//! cargo run --release -p haul-bench -- --backend memory --jobs 20000 --concurrency 32
//! ```

mod workloads;

use std::{path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use serde::Serialize;

/// Command-line settings.
#[derive(Debug, Parser)]
#[command(about = "Measure haul's throughput on each backend")]
struct Args {
    /// Backend to measure.
    #[arg(long, value_enum, default_value_t = BackendChoice::Memory)]
    backend: BackendChoice,
    /// Jobs per workload.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Worker concurrency for the drain workload.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum BackendChoice {
    Memory,
    All,
}

/// One measured figure.
#[derive(Debug, Serialize)]
struct Figure {
    backend: &'static str,
    workload: &'static str,
    jobs: usize,
    seconds: f64,
    jobs_per_second: f64,
}

impl Figure {
    fn new(backend: &'static str, workload: &'static str, jobs: usize, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        Self { backend, workload, jobs, seconds, jobs_per_second: jobs as f64 / seconds.max(f64::EPSILON) }
    }
}

#[derive(Debug, Serialize)]
struct RunReport<'a> {
    settings: Settings<'a>,
    figures: &'a [Figure],
}

#[derive(Debug, Serialize)]
struct Settings<'a> {
    backend: BackendChoice,
    jobs: usize,
    concurrency: usize,
    cpus: usize,
    haul_version: &'a str,
    git_commit: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut figures = Vec::new();
    match args.backend {
        BackendChoice::Memory | BackendChoice::All => {
            figures.extend(workloads::memory(args.jobs, args.concurrency).await?);
        }
    }
    print_table(&figures);
    if let Some(path) = &args.json {
        let report = RunReport {
            settings: Settings {
                backend: args.backend,
                jobs: args.jobs,
                concurrency: args.concurrency,
                cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                haul_version: env!("CARGO_PKG_VERSION"),
                git_commit: git_commit(),
            },
            figures: &figures,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn print_table(figures: &[Figure]) {
    println!("{:<8} {:<28} {:>8} {:>10} {:>12}", "backend", "workload", "jobs", "seconds", "jobs/s");
    for figure in figures {
        println!(
            "{:<8} {:<28} {:>8} {:>10.3} {:>12.0}",
            figure.backend, figure.workload, figure.jobs, figure.seconds, figure.jobs_per_second
        );
    }
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}
