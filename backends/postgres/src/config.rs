//! Configuration of a [`crate::PostgresStorage`].

use haul_core::{Result, validate_namespace};

/// The schema used when none is configured.
pub const DEFAULT_SCHEMA: &str = "haul";

/// Where and how a [`crate::PostgresStorage`] keeps its tables.
///
/// ```
/// use haul_postgres::PostgresConfig;
///
/// let config = PostgresConfig::new().schema("billing_jobs");
/// assert_eq!(config.schema_name(), "billing_jobs");
/// assert!(config.validate().is_ok());
/// assert!(PostgresConfig::new().schema("Robert'); DROP TABLE jobs;--").validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresConfig {
    schema: String,
}

impl PostgresConfig {
    /// The default configuration: schema `haul`.
    pub fn new() -> Self {
        Self { schema: DEFAULT_SCHEMA.to_owned() }
    }

    /// Sets the schema holding the `jobs` and `queues` tables (default `haul`): 1 to
    /// 100 lowercase letters, digits and `_`, starting with a letter. It is validated
    /// when the storage is built.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The configured schema.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// Checks the configuration ([`haul_core::Error::InvalidName`] for a bad schema).
    pub fn validate(&self) -> Result<()> {
        validate_namespace(&self.schema)
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The NOTIFY channel of a schema: `haul_<schema>`, or when that is longer than
/// PostgreSQL's 63-byte identifier limit, a prefix of it and a stable hash of the rest.
pub(crate) fn channel_name(schema: &str) -> String {
    let full = format!("haul_{schema}");
    if full.len() <= 63 {
        return full;
    }
    // FNV-1a, 64 bits: stable across processes, versions and platforms.
    let hash = schema
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{}_{hash:016x}", &full[..46])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_fit_in_a_postgres_identifier() {
        assert_eq!(channel_name("haul"), "haul_haul");
        let long = "a".repeat(100);
        let other = format!("{}b", "a".repeat(99));
        assert_eq!(channel_name(&long).len(), 63);
        assert_ne!(channel_name(&long), channel_name(&other));
        assert_eq!(channel_name(&long), channel_name(&long));
    }
}
