//! The layout-version marker of a key prefix: `haul:{<prefix>}:layout`, a string
//! holding the version of the key layout the prefix's keys follow.
//!
//! [`Storage::migrate`](haul_core::Storage::migrate) sets it when absent; every check
//! refuses a prefix whose marker names another version (a different haul laid its keys
//! out in a way this one would misread). A prefix without a marker is accepted: Redis
//! needs nothing set up, and keys written before the marker existed follow version 1.
//!
//! Keys and fields added later that a missing value reads right for keep the version:
//! the queue limits, the running jobs per limit key (`haul:{<prefix>:<queue>}:key_running`,
//! absent: 0 for every key), a job's `limit_key` (absent: no key), the rate limits in a
//! queue's limits hash (absent: none) and the start sets of rate limits
//! (`haul:{<prefix>:<queue>}:starts` and `…:starts:<limit key>`, absent: no start) among
//! them. A
//! version names a change that an older or newer haul would misread.

use haul_core::{Error, Result};
use redis::AsyncCommands;

use crate::{BACKEND, RedisStorage, error::map_redis_error};

/// The version of the key layout this build reads and writes.
pub(crate) const LAYOUT_VERSION: u32 = 1;

impl RedisStorage {
    /// Marks the prefix with [`LAYOUT_VERSION`] unless it holds a marker already
    /// (`SET NX`, so concurrent calls agree), then checks the marker: a prefix marked
    /// by another version is refused.
    pub(crate) async fn migrate_layout(&self) -> Result<()> {
        let key = self.inner.keys.layout();
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(LAYOUT_VERSION)
            .arg("NX")
            .query_async(&mut self.conn())
            .await
            .map_err(map_redis_error)?;
        self.check_layout().await
    }

    /// Checks that the prefix's marker is absent or names [`LAYOUT_VERSION`]; otherwise
    /// fails with [`Error::StorageNotReady`] naming the prefix, both versions and the
    /// ways out. One `GET`. Connecting does not call it, so that such a prefix can
    /// still be looked at and purged.
    pub(crate) async fn check_layout(&self) -> Result<()> {
        let stored: Option<String> = self.conn().get(self.inner.keys.layout()).await.map_err(map_redis_error)?;
        check_marker(self.prefix(), stored.as_deref())
    }
}

/// Judges the marker `stored` (its value, if the key exists) of `prefix`.
fn check_marker(prefix: &str, stored: Option<&str>) -> Result<()> {
    let Some(stored) = stored else { return Ok(()) };
    if stored.parse::<u32>().is_ok_and(|version| version == LAYOUT_VERSION) {
        return Ok(());
    }
    let holds = match stored.parse::<u32>() {
        Ok(version) => format!("holds haul layout version {version}"),
        Err(_) => format!("holds an unreadable layout marker ({stored:?} in `haul:{{{prefix}}}:layout`)"),
    };
    Err(Error::StorageNotReady {
        backend: BACKEND,
        reason: format!(
            "key prefix `{prefix}` {holds}; this haul uses version {LAYOUT_VERSION}: use another prefix, or run the \
             haul that wrote it, or delete the prefix's keys (and its jobs) with `RedisStorage::purge()` and call \
             `storage.migrate()` again"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<()>) -> String {
        match result {
            Err(Error::StorageNotReady { backend: "redis", reason }) => reason,
            other => panic!("expected StorageNotReady, got {other:?}"),
        }
    }

    #[test]
    fn an_absent_marker_or_this_version_is_accepted() {
        assert!(check_marker("app", None).is_ok());
        assert!(check_marker("app", Some(&LAYOUT_VERSION.to_string())).is_ok());
    }

    #[test]
    fn another_version_is_refused_naming_prefix_both_versions_and_the_ways_out() {
        let reason = reason(check_marker("app", Some("2")));
        assert!(reason.starts_with("key prefix `app` holds haul layout version 2; this haul uses version 1:"));
        assert!(reason.contains("use another prefix") && reason.contains("storage.migrate()"), "{reason}");
    }

    #[test]
    fn an_unreadable_marker_is_refused_showing_its_value() {
        let reason = reason(check_marker("app", Some("v1")));
        assert!(reason.contains("unreadable layout marker (\"v1\" in `haul:{app}:layout`)"), "{reason}");
    }
}
