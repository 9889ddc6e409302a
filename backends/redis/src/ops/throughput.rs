//! The per-queue, per-minute throughput counts: one hash, `haul:{<prefix>}:throughput`,
//! in the prefix's slot, with two integer fields per queue and minute,
//! `c:<minute>:<queue>` (completed attempts) and `f:<minute>:<queue>` (failed ones),
//! and its index, the sorted set `haul:{<prefix>}:throughput:minutes` of
//! `<minute>:<queue>` scored by the minute. `<minute>` is the minute's start in whole
//! seconds since the Unix epoch; a queue name holds no `:`, so the minute is the text
//! before the first one.
//!
//! `record_throughput.lua` adds a call's samples (`HINCRBY`) and drops the minutes
//! older than [`THROUGHPUT_RETENTION`] before now, found through the index, in one
//! atomic script; `throughput.lua` reads the members from a minute on and their two
//! fields. Neither looks at any other key, and each is one round trip whatever the
//! number of queues.

use chrono::DateTime;
use haul_core::{Result, THROUGHPUT_RETENTION, ThroughputSample, Timestamp, merge_samples, minute_of};
use redis::Value;

use crate::{
    RedisStorage,
    codec::{clock_arg, duration_micros, reply},
    error::corrupt,
    scripts::scripts,
};

impl RedisStorage {
    /// Checks every sample, then runs `record_throughput.lua` once with the samples
    /// merged per queue and minute (nothing is sent for no samples). The script adds
    /// them and drops the minutes older than the retention before `now` (default: the
    /// server's `TIME`), atomically, so concurrent calls add up.
    pub(crate) async fn record_samples(&self, samples: Vec<ThroughputSample>, now: Option<Timestamp>) -> Result<()> {
        for sample in &samples {
            sample.validate()?;
        }
        if samples.is_empty() {
            return Ok(());
        }
        let samples = merge_samples(samples);
        let keys = &self.inner.keys;
        let mut call = scripts().record_throughput.prepare_invoke();
        call.key(keys.throughput())
            .key(keys.throughput_minutes())
            .arg(clock_arg(now))
            .arg(duration_micros(THROUGHPUT_RETENTION))
            .arg(samples.len());
        for sample in &samples {
            call.arg(member(&sample.queue, sample.minute))
                .arg(sample.minute.timestamp())
                .arg(count_arg(sample.completed))
                .arg(count_arg(sample.failed));
        }
        self.run(&call).await?;
        Ok(())
    }

    /// One `throughput.lua` (read only): the counts from the minute holding `since` on,
    /// by queue then minute. A member whose counts are not readable (written by hand)
    /// is left out with a warning, so one bad field does not hide the rest.
    pub(crate) async fn samples_since(&self, since: Timestamp) -> Result<Vec<ThroughputSample>> {
        let keys = &self.inner.keys;
        let mut call = scripts().throughput.prepare_invoke();
        call.key(keys.throughput()).key(keys.throughput_minutes()).arg(minute_of(since).timestamp());
        let items = reply::array(self.run(&call).await?)?;
        if items.len() % 3 != 0 {
            return Err(corrupt(format!("a throughput reply has {} items, not a multiple of 3", items.len())));
        }
        let mut samples = Vec::with_capacity(items.len() / 3);
        let mut items = items.into_iter();
        while let (Some(member), Some(completed), Some(failed)) = (items.next(), items.next(), items.next()) {
            let member = reply::string(member)?;
            match decode(&member, completed, failed) {
                Ok(Some(sample)) => samples.push(sample),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "leaving out an unreadable throughput sample"),
            }
        }
        Ok(merge_samples(samples))
    }
}

/// The index member (and, after `c:` or `f:`, the count fields) of `queue`'s `minute`.
fn member(queue: &str, minute: Timestamp) -> String {
    format!("{}:{queue}", minute_of(minute).timestamp())
}

/// A count as the script takes it: `HINCRBY` adds signed 64-bit integers, so a count
/// above `i64::MAX` is sent as that (the stored count saturates there anyway).
fn count_arg(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The sample of index member `member` from its two count fields (nil when missing: a
/// missing count is 0, and a member with neither field is no sample).
fn decode(member: &str, completed: Value, failed: Value) -> Result<Option<ThroughputSample>> {
    let unreadable = |what: String| corrupt(format!("the throughput sample `{member}` is not readable: {what}"));
    let (minute, queue) =
        member.split_once(':').ok_or_else(|| unreadable("its member has no `:` after the minute".to_owned()))?;
    let minute = minute
        .parse::<i64>()
        .ok()
        .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
        .ok_or_else(|| unreadable(format!("the minute `{minute}` is not a time")))?;
    let count = |field: &str, value: Value| -> Result<Option<u64>> {
        if value == Value::Nil {
            return Ok(None);
        }
        let text = reply::string(value)?;
        text.parse().map(Some).map_err(|_| unreadable(format!("the {field} count `{text}` is not a count")))
    };
    match (count("completed", completed)?, count("failed", failed)?) {
        (None, None) => Ok(None),
        (completed, failed) => {
            Ok(Some(ThroughputSample::new(queue, minute, completed.unwrap_or(0), failed.unwrap_or(0))))
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use haul_core::ErrorKind;

    use super::*;

    fn text(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_member_is_the_minute_in_seconds_then_the_queue() {
        let at = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 59).single().unwrap_or_default();
        assert_eq!(member("mail.high", at), "1893456000:mail.high");
        let before_the_epoch = Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 30).single().unwrap_or_default();
        assert_eq!(member("q", before_the_epoch), "-60:q");
    }

    #[test]
    fn a_member_and_its_counts_read_back_as_a_sample() {
        let minute = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).single().unwrap_or_default();
        let sample = decode("1893456000:mail", text("12"), text("3")).ok().flatten();
        assert_eq!(sample, Some(ThroughputSample::new("mail", minute, 12, 3)));
        let one_missing = decode("1893456000:mail", Value::Nil, text("3")).ok().flatten();
        assert_eq!(one_missing, Some(ThroughputSample::new("mail", minute, 0, 3)));
        assert!(matches!(decode("1893456000:mail", Value::Nil, Value::Nil), Ok(None)));
        let max = decode("0:q", text("18446744073709551615"), text("0")).ok().flatten();
        assert_eq!(max.map(|sample| sample.completed), Some(u64::MAX));
    }

    #[test]
    fn an_unreadable_member_or_count_is_corrupt_data() {
        for (member, completed) in [("nominute", "1"), ("x:q", "1"), ("60:q", "-1"), ("60:q", "ten")] {
            let error = decode(member, text(completed), text("0")).err();
            assert_eq!(error.and_then(|error| error.kind()), Some(ErrorKind::CorruptData), "{member} {completed}");
        }
    }

    #[test]
    fn a_count_beyond_a_redis_integer_is_sent_as_the_largest_one() {
        assert_eq!(count_arg(7), 7);
        assert_eq!(count_arg(u64::MAX), i64::MAX);
    }
}
