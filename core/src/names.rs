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
    QUEUE.check(name)
}

/// Checks a job kind name: 1 to 100 characters from `A-Z a-z 0-9 _ - . :`.
pub fn validate_kind_name(name: &str) -> Result<()> {
    KIND.check(name)
}

/// Checks a periodic job's name: 1 to 100 characters from `A-Z a-z 0-9 _ - . :`.
pub fn validate_periodic_name(name: &str) -> Result<()> {
    PERIODIC.check(name)
}

/// Checks a storage namespace (a PostgreSQL schema, a Redis key prefix): 1 to 100
/// characters, lowercase letters, digits and `_`, starting with a letter.
pub fn validate_namespace(name: &str) -> Result<()> {
    NAMESPACE.check(name)?;
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid(NAMESPACE.what, name, "must start with a lowercase letter (a-z)"));
    }
    Ok(())
}

/// What one kind of name may hold, and the reasons given when it does not: each says
/// the whole rule, so the error tells how to fix the name.
struct NameRule {
    what: &'static str,
    allowed: fn(char) -> bool,
    empty: &'static str,
    too_long: &'static str,
    bad_character: &'static str,
}

/// Builds a [`NameRule`] whose reasons spell out `$chars` and the length limit
/// ([`MAX_NAME_LEN`], checked by a test).
macro_rules! name_rule {
    ($what:literal, $chars:literal, $allowed:expr) => {
        NameRule {
            what: $what,
            allowed: $allowed,
            empty: concat!("must not be empty: use 1 to 100 characters of ", $chars),
            too_long: concat!("is longer than 100 characters: use 1 to 100 characters of ", $chars),
            bad_character: concat!("may only hold ", $chars, " (1 to 100 characters)"),
        }
    };
}

const QUEUE: NameRule =
    name_rule!("queue", "`A-Z a-z 0-9 _ - .`", |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));

/// The characters of kind and periodic job names: they go into uniqueness keys.
fn is_kind_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

const KIND: NameRule = name_rule!("job kind", "`A-Z a-z 0-9 _ - . :`", is_kind_char);

const PERIODIC: NameRule = name_rule!("periodic job name", "`A-Z a-z 0-9 _ - . :`", is_kind_char);

const NAMESPACE: NameRule = name_rule!("namespace", "`a-z 0-9 _`, starting with a lowercase letter", |c| c
    .is_ascii_lowercase()
    || c.is_ascii_digit()
    || c == '_');

impl NameRule {
    fn check(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(invalid(self.what, name, self.empty));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid(self.what, name, self.too_long));
        }
        if !name.chars().all(self.allowed) {
            return Err(invalid(self.what, name, self.bad_character));
        }
        Ok(())
    }
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

    #[test]
    fn a_rejected_queue_name_is_told_which_characters_and_length_are_allowed() {
        for bad in ["", "mail queue", &"x".repeat(101)] {
            let message = validate_queue_name(bad).err().map(|error| error.to_string()).unwrap_or_default();
            assert!(message.contains("`A-Z a-z 0-9 _ - .`"), "{message}");
            assert!(message.contains(&format!("1 to {MAX_NAME_LEN} characters")), "{message}");
        }
        let message = validate_queue_name("mail queue").err().map(|error| error.to_string()).unwrap_or_default();
        assert_eq!(message, "invalid queue `mail queue`: may only hold `A-Z a-z 0-9 _ - .` (1 to 100 characters)");
    }

    #[test]
    fn every_rule_states_the_length_limit_it_enforces() {
        for rule in [&QUEUE, &KIND, &NAMESPACE] {
            for reason in [rule.empty, rule.too_long, rule.bad_character] {
                assert!(reason.contains(&format!("1 to {MAX_NAME_LEN} characters")), "{reason}");
            }
        }
    }
}
