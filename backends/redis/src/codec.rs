//! The stored form: instants and durations as integer µs, a job as the fields of its
//! hash, and the replies of the scripts.

use std::{collections::HashMap, str::FromStr, time::Duration};

use chrono::DateTime;
use haul_core::{
    AttemptError, Error, JobId, JobRecord, JobState, Leadership, LeaseToken, Metadata, Result, Timestamp, WorkerBeat,
    WorkerRecord, metadata_from_json,
};
use redis::Value;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::corrupt;

/// The largest instant (in µs either side of the epoch) stored: 2^53 - 1, so that the
/// Lua scripts, whose numbers are doubles, hold every instant exactly. That is about
/// the year 2255; later instants are stored as this one.
pub(crate) const MAX_MICROS: i64 = (1 << 53) - 1;

/// An instant as stored: µs since the Unix epoch, clamped to ±[`MAX_MICROS`].
pub(crate) fn micros(at: Timestamp) -> i64 {
    at.timestamp_micros().clamp(-MAX_MICROS, MAX_MICROS)
}

/// A duration as stored: whole µs, at most [`MAX_MICROS`].
pub(crate) fn duration_micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX).min(MAX_MICROS)
}

/// The clock override of a script: µs, or empty for the server's `TIME`.
pub(crate) fn clock_arg(now: Option<Timestamp>) -> String {
    now.map(|now| micros(now).to_string()).unwrap_or_default()
}

/// One entry of the `errors` field (a JSON array).
#[derive(Deserialize)]
struct StoredError {
    attempt: u32,
    at: i64,
    message: String,
}

/// The fields of a job hash.
pub(crate) type Fields = HashMap<String, String>;

/// A job record from the fields of its hash.
pub(crate) fn record_from_fields(fields: &Fields) -> Result<JobRecord> {
    let id = JobId(parse_uuid(fields, "id")?);
    // Arguments that cannot be read fail their job alone (see `JobRecord::unreadable_args`).
    let (args, unreadable_args) = match serde_json::from_str(required(fields, "args")?) {
        Ok(args) => (args, None),
        Err(error) => (serde_json::Value::Null, Some(format!("field `args` is not readable JSON: {error}"))),
    };
    let mut record = JobRecord::new(id, required(fields, "kind")?, args);
    record.unreadable_args = unreadable_args;
    record.queue = required(fields, "queue")?.to_owned();
    record.priority = parse(fields, "priority")?;
    record.state = JobState::from_str(required(fields, "state")?)
        .map_err(|_| corrupt(format!("job {id}: field `state` is not a job state")))?;
    record.attempt = parse(fields, "attempt")?;
    record.max_attempts = parse(fields, "max_attempts")?;
    record.timeout = optional::<u64>(fields, "timeout")?.map(Duration::from_micros);
    record.run_at = instant(fields, "run_at")?;
    record.created_at = instant(fields, "created_at")?;
    record.attempted_at = optional_instant(fields, "attempted_at")?;
    record.finished_at = optional_instant(fields, "finished_at")?;
    record.cancel_requested_at = optional_instant(fields, "cancel_requested_at")?;
    record.errors = match fields.get("errors") {
        None => Vec::new(),
        Some(errors) => serde_json::from_str::<Vec<StoredError>>(errors)
            .map_err(|error| corrupt(format!("job {id}: field `errors` is not an error list: {error}")))?
            .into_iter()
            .map(|error| {
                Ok(AttemptError { attempt: error.attempt, at: from_micros(error.at)?, message: error.message })
            })
            .collect::<Result<_>>()?,
    };
    record.lease_token =
        if fields.contains_key("lease_token") { Some(LeaseToken(parse_uuid(fields, "lease_token")?)) } else { None };
    record.lease_expires_at = optional_instant(fields, "lease_expires_at")?;
    record.claimed_by = fields.get("claimed_by").cloned();
    record.unique_key = fields.get("unique_key").cloned();
    record.limit_key = fields.get("limit_key").cloned();
    if let Some(metadata) = fields.get("metadata") {
        record.metadata = std::sync::Arc::new(metadata_from_field(record.id, metadata));
    }
    Ok(record)
}

/// The job's metadata from its `metadata` field: a JSON object of strings, read
/// straight into the map; anything else is read leniently ([`metadata_from_json`]),
/// and text that is not JSON as no metadata, with a warning: a field written by hand
/// never fails a claim.
fn metadata_from_field(job: JobId, text: &str) -> Metadata {
    if let Ok(metadata) = serde_json::from_str::<Metadata>(text) {
        return metadata;
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => metadata_from_json(job, value),
        Err(error) => {
            tracing::warn!(%job, %error, "the job's stored metadata is not JSON; reading it as empty");
            Metadata::new()
        }
    }
}

fn required<'a>(fields: &'a Fields, name: &str) -> Result<&'a str> {
    fields.get(name).map(String::as_str).ok_or_else(|| missing(fields, name))
}

fn missing(fields: &Fields, name: &str) -> Error {
    match fields.get("id") {
        Some(id) => corrupt(format!("job {id} has no field `{name}`")),
        None => corrupt(format!("a stored job has no field `{name}`")),
    }
}

fn parse<T: FromStr>(fields: &Fields, name: &str) -> Result<T> {
    let value = required(fields, name)?;
    value.parse().map_err(|_| corrupt(format!("field `{name}` of a stored job has the unexpected value `{value}`")))
}

fn optional<T: FromStr>(fields: &Fields, name: &str) -> Result<Option<T>> {
    if fields.contains_key(name) { parse(fields, name).map(Some) } else { Ok(None) }
}

pub(crate) fn parse_uuid(fields: &Fields, name: &str) -> Result<Uuid> {
    parse(fields, name)
}

fn instant(fields: &Fields, name: &str) -> Result<Timestamp> {
    from_micros(parse(fields, name)?)
}

fn optional_instant(fields: &Fields, name: &str) -> Result<Option<Timestamp>> {
    optional(fields, name)?.map(from_micros).transpose()
}

pub(crate) fn from_micros(micros: i64) -> Result<Timestamp> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| corrupt(format!("{micros} µs is not a valid instant")))
}

/// The fields of a worker's record that its beat gives, as `beat_worker.lua` takes
/// them: a JSON object (instants in µs) to which the script adds `last_seen_at` and
/// `expires_at`.
pub(crate) fn worker_fields(beat: &WorkerBeat) -> String {
    serde_json::json!({
        "id": beat.id,
        "host": beat.host,
        "pid": beat.pid,
        "queues": beat.queues,
        "concurrency": beat.concurrency,
        "held": beat.held,
        "started_at": micros(beat.started_at),
    })
    .to_string()
}

/// A worker's record as stored in the registry.
#[derive(Deserialize)]
struct StoredWorker {
    id: String,
    host: String,
    pid: u32,
    queues: Vec<String>,
    concurrency: u32,
    held: u32,
    started_at: i64,
    last_seen_at: i64,
    expires_at: i64,
}

/// A worker's record from its registry entry (see [`worker_fields`]).
pub(crate) fn worker_from_stored(text: &str) -> Result<WorkerRecord> {
    let stored: StoredWorker = serde_json::from_str(text)
        .map_err(|error| corrupt(format!("a worker record of the registry is not readable: {error}")))?;
    let beat = WorkerBeat::new(stored.id, from_micros(stored.started_at)?, Duration::ZERO)
        .process(stored.host, stored.pid)
        .serving(stored.queues, stored.concurrency)
        .held(stored.held);
    let mut record = WorkerRecord::from_beat(&beat, from_micros(stored.last_seen_at)?);
    record.expires_at = from_micros(stored.expires_at)?;
    Ok(record)
}

/// Reading script replies.
pub(crate) mod reply {
    use super::*;

    /// The items of an array reply.
    pub(crate) fn array(value: Value) -> Result<Vec<Value>> {
        match value {
            Value::Array(items) | Value::Set(items) => Ok(items),
            Value::Nil => Ok(Vec::new()),
            other => Err(corrupt(format!("expected an array reply, got {other:?}"))),
        }
    }

    /// A string reply.
    pub(crate) fn string(value: Value) -> Result<String> {
        match value {
            Value::BulkString(bytes) => {
                String::from_utf8(bytes).map_err(|_| corrupt("a reply is not valid UTF-8".to_owned()))
            }
            Value::SimpleString(text) => Ok(text),
            Value::VerbatimString { text, .. } => Ok(text),
            other => Err(corrupt(format!("expected a string reply, got {other:?}"))),
        }
    }

    /// An integer reply.
    pub(crate) fn int(value: Value) -> Result<i64> {
        match value {
            Value::Int(n) => Ok(n),
            other => string(other)?.parse().map_err(|_| corrupt("expected an integer reply".to_owned())),
        }
    }

    /// A HGETALL field list (flat, or a RESP3 map).
    pub(crate) fn fields(value: Value) -> Result<Fields> {
        if let Value::Map(pairs) = value {
            return pairs.into_iter().map(|(field, value)| Ok((string(field)?, string(value)?))).collect();
        }
        paired(array(value)?, string)
    }

    /// The fields of a flat `[field, value, ...]` list, each item read with `read`.
    fn paired<T>(items: Vec<T>, read: fn(T) -> Result<String>) -> Result<Fields> {
        if !items.len().is_multiple_of(2) {
            return Err(corrupt("a field list has an odd length".to_owned()));
        }
        let mut fields = Fields::with_capacity(items.len() / 2);
        let mut items = items.into_iter();
        while let (Some(field), Some(value)) = (items.next(), items.next()) {
            fields.insert(read(field)?, read(value)?);
        }
        Ok(fields)
    }

    /// Field lists sent as one JSON text, an array of `[field, value, ...]` string
    /// arrays (`claim.lua`'s jobs); bytes that are not UTF-8 (a job hash written by
    /// hand) read as U+FFFD, so that the fields that do read still say which job it is.
    pub(crate) fn field_lists(value: Value) -> Result<Vec<Fields>> {
        let bytes = match value {
            Value::BulkString(bytes) => bytes,
            other => string(other)?.into_bytes(),
        };
        let text =
            String::from_utf8(bytes).unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned());
        let lists: Vec<Vec<String>> =
            serde_json::from_str(&text).map_err(|error| corrupt(format!("a list of jobs does not read: {error}")))?;
        lists.into_iter().map(|list| paired(list, Ok)).collect()
    }

    /// A leadership from a `{worker_id, term, expires_at}` reply; `None` for nil.
    pub(crate) fn leadership(value: Value) -> Result<Option<Leadership>> {
        let items = array(value)?;
        if items.is_empty() {
            return Ok(None);
        }
        let [worker_id, term, expires_at] = <[Value; 3]>::try_from(items)
            .map_err(|items| corrupt(format!("a leadership reply has {} items, not 3", items.len())))?;
        let term = string(term)?;
        let term = term.parse().map_err(|_| corrupt(format!("the leadership term `{term}` is not a number")))?;
        Ok(Some(Leadership::new(string(worker_id)?, term, from_micros(int(expires_at)?)?)))
    }

    /// A job record from a HGETALL field list.
    pub(crate) fn record(value: Value) -> Result<JobRecord> {
        record_from_fields(&fields(value)?)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|(field, value)| ((*field).to_owned(), (*value).to_owned())).collect()
    }

    #[test]
    fn instants_are_whole_microseconds_and_saturate() {
        let at = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single().expect("valid");
        assert_eq!(micros(at), 1_893_456_000_000_000);
        assert_eq!(from_micros(micros(at)).ok(), Some(at));
        assert_eq!(micros(DateTime::<Utc>::MAX_UTC), MAX_MICROS);
        assert_eq!(micros(DateTime::<Utc>::MIN_UTC), -MAX_MICROS);
        assert_eq!(duration_micros(Duration::MAX), MAX_MICROS);
        assert_eq!(duration_micros(Duration::from_millis(1500)), 1_500_000);
    }

    #[test]
    fn a_stored_job_reads_back_with_its_optional_fields() {
        let id = JobId::new();
        let token = LeaseToken::new();
        let stored = fields(&[
            ("id", &id.to_string()),
            ("kind", "mail.send"),
            ("args", r#"{"to":"a@b.c"}"#),
            ("queue", "mail"),
            ("priority", "-3"),
            ("state", "running"),
            ("attempt", "2"),
            ("max_attempts", "5"),
            ("timeout", "90000000"),
            ("run_at", "1893456000000000"),
            ("created_at", "1893456000000000"),
            ("attempted_at", "1893456001000000"),
            ("lease_token", &token.to_string()),
            ("lease_expires_at", "1893456031000000"),
            ("claimed_by", "host/1"),
            ("errors", r#"[{"attempt":1,"at":1893456000500000,"message":"boom \/ \"x\""}]"#),
        ]);
        let record = record_from_fields(&stored).expect("a valid record");
        assert_eq!(record.id, id);
        assert_eq!(record.args, serde_json::json!({ "to": "a@b.c" }));
        assert_eq!(record.priority, -3);
        assert_eq!(record.state, JobState::Running);
        assert_eq!(record.timeout, Some(Duration::from_secs(90)));
        assert_eq!(record.lease_token, Some(token));
        assert_eq!(record.finished_at, None);
        assert_eq!(record.errors.len(), 1);
        assert_eq!(record.errors[0].message, "boom / \"x\"");
        assert_eq!(record.errors[0].attempt, 1);
    }

    #[test]
    fn a_worker_record_reads_back_with_the_times_the_script_adds() {
        let started = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single().expect("valid");
        let beat = WorkerBeat::new("host/42/a\"b", started, Duration::from_secs(30))
            .process("host", 42)
            .serving(vec!["mail".to_owned(), "default".to_owned()], 8)
            .held(3);
        let fields = worker_fields(&beat);
        assert!(fields.starts_with('{') && fields.len() > 2, "{fields}");
        // What beat_worker.lua stores: the two times put first.
        let stored = format!(r#"{{"last_seen_at":1893456010000000,"expires_at":1893456040000000,{}"#, &fields[1..]);
        let record = worker_from_stored(&stored).expect("a valid record");
        let seen = started + chrono::Duration::seconds(10);
        let mut expected = WorkerRecord::from_beat(&beat, seen);
        expected.expires_at = seen + chrono::Duration::seconds(30);
        assert_eq!(record, expected);
        let error = worker_from_stored("{}").expect_err("incomplete");
        assert_eq!(error.kind(), Some(haul_core::ErrorKind::CorruptData));
    }

    #[test]
    fn a_leadership_reply_reads_back_and_nil_is_none() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let reply = Value::Array(vec![bulk("w1"), bulk("7"), bulk("1893456000000000")]);
        let leadership = reply::leadership(reply).expect("valid").expect("held");
        assert_eq!((leadership.worker_id.as_str(), leadership.term), ("w1", 7));
        assert_eq!(micros(leadership.expires_at), 1_893_456_000_000_000);
        assert_eq!(reply::leadership(Value::Nil).expect("valid"), None);
        let error = reply::leadership(Value::Array(vec![bulk("w1"), bulk("x"), bulk("1")])).expect_err("bad term");
        assert_eq!(error.kind(), Some(haul_core::ErrorKind::CorruptData));
    }

    #[test]
    fn metadata_reads_back_exactly_and_is_empty_without_its_field() {
        let id = JobId::new().to_string();
        let mut stored = fields(&[
            ("id", &id),
            ("kind", "k"),
            ("args", "{}"),
            ("queue", "q"),
            ("priority", "0"),
            ("state", "available"),
            ("attempt", "0"),
            ("max_attempts", "3"),
            ("run_at", "1893456000000000"),
            ("created_at", "1893456000000000"),
        ]);
        assert!(record_from_fields(&stored).expect("valid").metadata.is_empty());
        let metadata: Metadata =
            [("tenant", "acme"), ("note", "a|b=c\n\"d\"\\ é")].map(|(k, v)| (k.to_owned(), v.to_owned())).into();
        stored.insert("metadata".to_owned(), serde_json::to_string(&metadata).expect("json"));
        assert_eq!(*record_from_fields(&stored).expect("valid").metadata, metadata);
        stored.insert("metadata".to_owned(), r#"{"shard":7,"tenant":"acme"}"#.to_owned());
        let lenient = record_from_fields(&stored).expect("valid").metadata;
        assert_eq!(lenient.get("shard").map(String::as_str), Some("7"));
        assert_eq!(lenient.get("tenant").map(String::as_str), Some("acme"));
        for bad in ["[1]", "not json"] {
            stored.insert("metadata".to_owned(), bad.to_owned());
            assert!(record_from_fields(&stored).expect("a bad field fails no claim").metadata.is_empty(), "{bad}");
        }
    }

    #[test]
    fn a_job_missing_a_field_is_corrupt_data() {
        let stored = fields(&[("id", &JobId::new().to_string()), ("kind", "k"), ("args", "{}")]);
        let error = record_from_fields(&stored).expect_err("incomplete");
        assert_eq!(error.kind(), Some(haul_core::ErrorKind::CorruptData));
    }

    #[test]
    fn job_lists_in_one_json_text_read_with_cjson_escapes_and_bad_bytes_replaced() {
        // As cjson writes them: `/` escaped, control characters as \u00XX, other bytes as
        // stored (here two that are not UTF-8).
        let mut text = br#"[["id","a","kind","k\/1","limit_key","tab\tbell\u0007\"q\"","args",""#.to_vec();
        text.extend_from_slice(&[0xff, 0xfe]);
        text.extend_from_slice(br#""],["id","b"]]"#);
        let lists = reply::field_lists(Value::BulkString(text)).expect("reads");
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[0]["kind"], "k/1");
        assert_eq!(lists[0]["limit_key"], "tab\tbell\u{7}\"q\"");
        assert_eq!(lists[0]["args"], "\u{FFFD}\u{FFFD}");
        assert_eq!(lists[1]["id"], "b");
        assert!(reply::field_lists(Value::BulkString(b"[]".to_vec())).expect("none").is_empty());
        let odd = reply::field_lists(Value::BulkString(br#"[["id"]]"#.to_vec())).expect_err("odd");
        assert_eq!(odd.kind(), Some(haul_core::ErrorKind::CorruptData));
    }
}
