//! Helpers for testing an application's jobs without running a worker.
