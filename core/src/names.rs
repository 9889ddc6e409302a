//! Validation of the names that end up in keys, schemas and SQL.

use crate::{Error, Result};

/// Longest accepted queue name, namespace or job kind.
pub const MAX_NAME_LEN: usize = 100;

/// Checks a queue name: 1 to 100 characters from `A-Z a-z 0-9 _ - .`.
///
/// ```
/// assert!(haul_core::validate_queue_name("mail.high").is_ok());
/// assert!(haul_core::validate_queue_name("mail queue").is_err());
/// ```
pub fn validate_queue_name(name: &str) -> Result<()> {
    validate("queue", name, |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Checks a job kind name: 1 to 100 characters from `A-Z a-z 0-9 _ - . :`.
pub fn validate_kind_name(name: &str) -> Result<()> {
    validate("job kind", name, |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// Checks a storage namespace (a PostgreSQL schema, a Redis key prefix): 1 to 100
/// characters, lowercase letters, digits and `_`, starting with a letter.
pub fn validate_namespace(name: &str) -> Result<()> {
    validate("namespace", name, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid("namespace", name, "must start with a lowercase letter"));
    }
    Ok(())
}

fn validate(what: &'static str, name: &str, allowed: impl Fn(char) -> bool) -> Result<()> {
    if name.is_empty() {
        return Err(invalid(what, name, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(what, name, "must be at most 100 characters"));
    }
    if !name.chars().all(allowed) {
        return Err(invalid(what, name, "contains a character that is not allowed"));
    }
    Ok(())
}

fn invalid(what: &'static str, value: &str, reason: &'static str) -> Error {
    Error::InvalidName { what, value: value.to_owned(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_long_and_odd_names() {
        for bad in ["", "a b", "q{1}", "é", &"x".repeat(101)] {
            assert!(matches!(validate_queue_name(bad), Err(Error::InvalidName { what: "queue", .. })), "{bad}");
        }
        assert!(validate_queue_name("default").is_ok());
        assert!(validate_kind_name("billing::charge").is_ok());
        assert!(validate_namespace("haul_test_1").is_ok());
        assert!(validate_namespace("1abc").is_err());
        assert!(validate_namespace("Abc").is_err());
    }
}
