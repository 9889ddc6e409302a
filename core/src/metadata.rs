//! Job metadata: a small string map stored with a job, set at enqueue (by the caller or
//! an enqueue middleware), read by the handler from its [`crate::JobContext`] and shown
//! by `get` and `list`. Tracing context (W3C `traceparent`), tenant ids and request ids
//! go here, not in the job's arguments.

use std::collections::BTreeMap;

use crate::{Error, JobId, MAX_NAME_LEN};

/// A job's metadata: keys to values, in key order.
pub type Metadata = BTreeMap<String, String>;

/// Largest metadata accepted per job: the bytes of every key and value together (64 KiB).
pub const MAX_METADATA_BYTES: usize = 64 << 10;

/// The bytes metadata entries count against [`MAX_METADATA_BYTES`]: every key and value.
pub(crate) fn metadata_size<'a>(entries: impl IntoIterator<Item = (&'a String, &'a String)>) -> usize {
    entries.into_iter().fold(0_usize, |size, (key, value)| size.saturating_add(key.len()).saturating_add(value.len()))
}

/// Checks a job's metadata: keys of 1 to [`MAX_NAME_LEN`] bytes without control
/// characters, values without NUL (no storage keeps it), and at most
/// [`MAX_METADATA_BYTES`] in all.
pub(crate) fn check_metadata(id: JobId, kind: &str, metadata: &Metadata) -> Result<(), Error> {
    let refuse = |why: String| Error::InvalidArgument(format!("job {id} of kind `{kind}`: {why}").into());
    for (key, value) in metadata {
        if key.is_empty() || key.len() > MAX_NAME_LEN || key.chars().any(char::is_control) {
            return Err(refuse(format!(
                "the metadata key {key:?} must have 1 to {MAX_NAME_LEN} bytes and no control characters"
            )));
        }
        if value.contains('\0') {
            return Err(refuse(format!("the metadata value of {key:?} holds a NUL character, which no storage keeps")));
        }
    }
    let size = metadata_size(metadata);
    if size > MAX_METADATA_BYTES {
        return Err(refuse(format!("its metadata takes {size} bytes; the limit is {MAX_METADATA_BYTES}")));
    }
    Ok(())
}

/// Metadata as a backend reads it back from stored JSON: an object's strings as they
/// are and its other values as their JSON text (a row written by hand still runs);
/// `null`, or any value that is not an object, as no metadata, with a warning naming
/// `job`, so a bad stored value never fails the claim of the jobs around it.
pub fn metadata_from_json(job: JobId, value: serde_json::Value) -> Metadata {
    use serde_json::Value;
    match value {
        Value::Null => Metadata::new(),
        Value::Object(fields) => fields
            .into_iter()
            .map(|(key, value)| match value {
                Value::String(text) => (key, text),
                other => (key, other.to_string()),
            })
            .collect(),
        other => {
            tracing::warn!(%job, stored = %other, "the job's stored metadata is not a JSON object; reading it as empty");
            Metadata::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(entries: &[(&str, &str)]) -> Result<(), Error> {
        let metadata = entries.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
        check_metadata(JobId::new(), "kind", &metadata)
    }

    #[test]
    fn stored_json_reads_leniently() {
        let id = JobId::new();
        let read = metadata_from_json(id, serde_json::json!({ "tenant": "acme", "retries": 3, "on": true }));
        assert_eq!(read.get("tenant").map(String::as_str), Some("acme"));
        assert_eq!(read.get("retries").map(String::as_str), Some("3"));
        assert_eq!(read.get("on").map(String::as_str), Some("true"));
        assert!(metadata_from_json(id, serde_json::Value::Null).is_empty());
        assert!(metadata_from_json(id, serde_json::json!(["not", "an", "object"])).is_empty());
    }

    #[test]
    fn small_maps_pass_and_bad_keys_values_and_sizes_are_refused_saying_why() {
        assert!(check(&[]).is_ok());
        assert!(check(&[("tenant", "acme"), ("traceparent", "00-abc-def-01")]).is_ok());
        let error = check(&[("", "x")]).expect_err("an empty key");
        assert!(error.to_string().contains("metadata key"), "{error}");
        assert!(check(&[("a\nb", "x")]).is_err());
        assert!(check(&[(&"k".repeat(MAX_NAME_LEN + 1), "x")]).is_err());
        let error = check(&[("k", "a\0b")]).expect_err("a NUL");
        assert!(error.to_string().contains("NUL"), "{error}");
        let big = "v".repeat(MAX_METADATA_BYTES);
        let error = check(&[("k", &big)]).expect_err("too big");
        assert!(error.to_string().contains("the limit is 65536"), "{error}");
        assert!(check(&[("k", &big[1..])]).is_ok());
    }
}
