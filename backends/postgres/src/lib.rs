#![doc = include_str!("../README.md")]

mod backend;
mod config;
mod error;
mod listen;
mod queries;
mod row;
mod storage;

pub use config::{DEFAULT_SCHEMA, PostgresConfig};
pub use storage::PostgresStorage;

/// The name this backend reports in errors and logs.
const BACKEND: &str = "postgres";
