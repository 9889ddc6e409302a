//! The one format of values in storage URLs' query parameters, shared by every backend
//! so that `?acquire_timeout=5s` and `?response_timeout=5s` read alike.
//!
//! ```
//! use std::time::Duration;
//! use haul_core::url_param;
//!
//! assert_eq!(url_param::duration("t", "500ms").unwrap(), Duration::from_millis(500));
//! assert_eq!(url_param::duration("t", "5").unwrap(), Duration::from_secs(5));
//! assert!(url_param::duration("t", "0s").is_err());
//! assert!(url_param::boolean("migrate", "yes").is_err());
//! ```

use std::time::Duration;

use crate::{Error, Result};

/// Reads a duration: a whole number above zero followed by `ms`, `s`, `m` or `h`, a bare
/// number being seconds. The error names the parameter `name` and the expected form.
pub fn duration(name: &str, value: &str) -> Result<Duration> {
    let digits_end = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (number, unit) = value.split_at(digits_end);
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => 0,
    };
    let millis = number.parse::<u64>().ok().and_then(|number| number.checked_mul(unit_ms)).filter(|&ms| ms > 0);
    millis.map(Duration::from_millis).ok_or_else(|| {
        Error::InvalidArgument(
            format!(
                "`{name}={value}` is not a duration: expected a whole number above zero with a unit, \
                 as in `500ms`, `5s`, `2m` or `1h` (a bare number is seconds)"
            )
            .into(),
        )
    })
}

/// Reads `true` or `false`; the error names the parameter `name`.
pub fn boolean(name: &str, value: &str) -> Result<bool> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => {
            Err(Error::InvalidArgument(format!("`{name}={value}` is not a boolean: expected `true` or `false`").into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_read() {
        for (text, expected) in [
            ("250ms", Duration::from_millis(250)),
            ("7", Duration::from_secs(7)),
            ("7s", Duration::from_secs(7)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3_600)),
        ] {
            assert_eq!(duration("t", text).ok(), Some(expected), "{text}");
        }
        for text in ["", "0", "0ms", "-1s", "1.5s", "5 s", "5d", "ms", "99999999999999999999h"] {
            assert!(duration("t", text).is_err(), "{text}");
        }
    }

    #[test]
    fn errors_name_the_parameter_and_the_expected_form() {
        let message = duration("acquire_timeout", "soon").unwrap_err().to_string();
        assert!(message.contains("`acquire_timeout=soon`") && message.contains("`500ms`"), "{message}");
        let message = boolean("migrate", "1").unwrap_err().to_string();
        assert!(message.contains("`migrate=1`") && message.contains("`true` or `false`"), "{message}");
    }
}
