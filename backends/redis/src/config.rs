//! Settings of a [`crate::RedisStorage`].

use std::time::Duration;

/// The key prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "haul";

/// How a [`crate::RedisStorage`] names its keys and talks to the server.
///
/// ```
/// use std::time::Duration;
/// let config = haul_redis::RedisConfig::new().prefix("billing").response_timeout(Duration::from_secs(5));
/// assert_eq!(config.prefix_name(), "billing");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The namespace of every key (`haul:{<prefix>}:…`, `haul:{<prefix>:<queue>}:…`):
    /// 1 to 100 lowercase letters, digits and `_`, starting with a letter. Storages with
    /// different prefixes share nothing.
    pub prefix: String,
    /// How long a command may wait for its reply before it fails with a timeout.
    pub response_timeout: Duration,
    /// How long connecting may take.
    pub connection_timeout: Duration,
    /// Whether to connect to a server whose `maxmemory-policy` is not `noeviction` (or
    /// cannot be read), with a warning, instead of refusing it. Off by default: such a
    /// server may evict job keys under memory pressure and lose jobs without a trace.
    /// See the crate docs (Setup, Persistence) for when the check runs.
    pub allow_eviction: bool,
    /// Whether connecting also runs [`Storage::migrate`](haul_core::Storage::migrate)
    /// before it returns (the URL's `migrate=true`). Off by default.
    pub migrate_on_connect: bool,
}

impl RedisConfig {
    /// The defaults: prefix `haul`, 10 s response timeout, 5 s connection timeout, a
    /// server that may evict keys is refused, and connecting runs no migration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the response timeout.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets the connection timeout.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Connects (logging a warning) to a server whose `maxmemory-policy` may evict keys,
    /// instead of refusing it. Only for a server where eviction cannot happen for
    /// another reason, or where losing jobs is acceptable.
    pub fn allow_eviction(mut self, allow: bool) -> Self {
        self.allow_eviction = allow;
        self
    }

    /// Runs [`Storage::migrate`](haul_core::Storage::migrate) as part of connecting (the
    /// URL's `migrate=true`), so that the storage returned is ready for this version of
    /// haul.
    pub fn migrate_on_connect(mut self, migrate: bool) -> Self {
        self.migrate_on_connect = migrate;
        self
    }

    /// The configured key prefix.
    pub fn prefix_name(&self) -> &str {
        &self.prefix
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            response_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(5),
            allow_eviction: false,
            migrate_on_connect: false,
        }
    }
}
