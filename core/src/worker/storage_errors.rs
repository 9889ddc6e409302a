//! The count of failed storage calls of the worker runtime, by operation.

/// Counts one storage call of the worker runtime that returned an error, in
/// `haul_storage_errors_total{operation}`. `operation` names the call: `claim`,
/// `subscribe`, `report`, `heartbeat`, `promote_due`, `rescue_expired`, `prune`,
/// `beat_worker`, `acquire_leadership`, `release_leadership`, `remove_worker`,
/// `periodic` (a pass of the periodic jobs: `list_periodic`, `enqueue`, `save_periodic`),
/// `check_ready` or `counts`.
pub(crate) fn count(operation: &'static str) {
    metrics::counter!("haul_storage_errors_total", "operation" => operation).increment(1);
}
