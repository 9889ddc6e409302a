#![doc = include_str!("../README.md")]

mod codec;
mod config;
mod conn;
mod error;
mod eviction;
mod first_reply;
mod keys;
mod layout;
mod ops;
mod scripts;
mod storage;
mod storage_impl;
mod url;
mod wakeup;

pub use config::{DEFAULT_PREFIX, RedisConfig};
pub use eviction::EvictionPolicyError;
pub use storage::RedisStorage;

/// The name this backend reports in errors and logs.
const BACKEND: &str = "redis";
