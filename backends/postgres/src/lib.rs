#![doc = include_str!("../README.md")]

mod backend;
mod bulk;
mod claim_start;
mod config;
mod error;
mod job_tx;
mod limits;
mod listen;
mod notify;
mod pool;
mod queries;
mod readiness;
mod row;
mod storage;
mod throughput;
mod unique;
mod url;

pub use config::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SCHEMA, DEFAULT_SLOW_CLAIM, PostgresConfig,
};
pub use job_tx::JobTransaction;
pub use storage::PostgresStorage;

/// The name this backend reports in errors and logs.
const BACKEND: &str = "postgres";
