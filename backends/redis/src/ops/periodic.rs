//! The periodic schedules' records: one hash, `haul:{<prefix>}:periodic`, in the
//! prefix's slot, field = schedule name, value = the record as
//! `<last_tick>|<next_tick>|<updated_at>|<spec>`.
//!
//! The three leading fields are integers in µs since the Unix epoch (an empty one for a
//! tick that is not set) and hold no `|`, so the record splits at its first three `|`
//! and the spec is the whole remainder, whatever it holds (`|`, quotes, newlines,
//! unicode). `save_periodic.lua` reads the stored last tick with one anchored match and
//! writes the record; the client only reads records back ([`decode`]).

use haul_core::{PeriodicRecord, PeriodicUpdate, Result, Timestamp};

use crate::{
    RedisStorage,
    codec::{clock_arg, from_micros, micros, reply},
    error::{corrupt, map_redis_error},
    scripts::scripts,
};

impl RedisStorage {
    /// One script (`save_periodic.lua`): compares the stored last tick with the
    /// update's and writes the record unless the update is stale, so concurrent saves
    /// from several processes end with the latest last tick.
    pub(crate) async fn save_periodic_record(&self, update: PeriodicUpdate) -> Result<()> {
        let mut call = scripts().save_periodic.prepare_invoke();
        call.key(self.inner.keys.periodic())
            .arg(clock_arg(update.now))
            .arg(&update.name)
            .arg(tick_arg(update.last_tick))
            .arg(tick_arg(update.next_tick))
            .arg(&update.spec);
        self.run(&call).await?;
        Ok(())
    }

    /// Every record (`HGETALL`), sorted by name. A stored value that is not a record
    /// (written by hand) is left out with a warning, so one bad field does not stop
    /// every schedule: its schedule is recorded afresh at its next save.
    pub(crate) async fn periodic_records(&self) -> Result<Vec<PeriodicRecord>> {
        let value: redis::Value = redis::cmd("HGETALL")
            .arg(self.inner.keys.periodic())
            .query_async(&mut self.conn())
            .await
            .map_err(map_redis_error)?;
        let mut records: Vec<PeriodicRecord> = reply::fields(value)?
            .into_iter()
            .filter_map(|(name, stored)| {
                decode(name, &stored)
                    .inspect_err(|error| tracing::warn!(%error, "leaving out an unreadable periodic record"))
                    .ok()
            })
            .collect();
        records.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    /// Deletes one record (`HDEL`); whether there was one.
    pub(crate) async fn delete_periodic_record(&self, name: &str) -> Result<bool> {
        let deleted: i64 = redis::cmd("HDEL")
            .arg(self.inner.keys.periodic())
            .arg(name)
            .query_async(&mut self.conn())
            .await
            .map_err(map_redis_error)?;
        Ok(deleted > 0)
    }
}

/// A tick as the script takes it: µs, or empty for none.
fn tick_arg(tick: Option<Timestamp>) -> String {
    tick.map(|tick| micros(tick).to_string()).unwrap_or_default()
}

/// The record of schedule `name` from its stored value (see the module docs).
pub(crate) fn decode(name: String, stored: &str) -> Result<PeriodicRecord> {
    let unreadable = |what: &str| corrupt(format!("the periodic record of `{name}` is not readable: {what}"));
    let mut parts = stored.splitn(4, '|');
    let (Some(last_tick), Some(next_tick), Some(updated_at), Some(spec)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(unreadable("it has fewer than four `|`-separated fields"));
    };
    let tick = |field: &str, text: &str| -> Result<Option<Timestamp>> {
        if text.is_empty() {
            return Ok(None);
        }
        let micros = text.parse().map_err(|_| unreadable(&format!("`{field}` is `{text}`, not a number")))?;
        from_micros(micros).map(Some)
    };
    let last_tick = tick("last_tick", last_tick)?;
    let next_tick = tick("next_tick", next_tick)?;
    let Some(updated_at) = tick("updated_at", updated_at)? else {
        return Err(unreadable("`updated_at` is empty"));
    };
    Ok(PeriodicRecord::new(name.as_str(), spec, last_tick, next_tick, updated_at))
}

/// The stored value of `record`, as `save_periodic.lua` writes it.
#[cfg(test)]
fn encode(record: &PeriodicRecord) -> String {
    format!(
        "{}|{}|{}|{}",
        tick_arg(record.last_tick),
        tick_arg(record.next_tick),
        micros(record.updated_at),
        record.spec
    )
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use haul_core::ErrorKind;

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Utc.timestamp_opt(1_893_456_000 + seconds, 0).single().expect("valid")
    }

    fn record(spec: &str, last: Option<Timestamp>, next: Option<Timestamp>) -> PeriodicRecord {
        PeriodicRecord::new("nightly.report:eu", spec, last, next, at(5))
    }

    #[test]
    fn a_record_round_trips_whatever_its_spec_holds() {
        let specs = [
            "every 30s",
            "",
            "cron \"0 3 * * *\" in Europe/Paris",
            "a|b||c|",
            "|",
            "line one\nline two\r\n\ttabbed",
            "tous les jours à 3 h — 毎日 🕒 | ok",
            "12|34|56|",
        ];
        for spec in specs {
            for (last, next) in [(Some(at(0)), Some(at(60))), (None, Some(at(60))), (Some(at(-60)), None), (None, None)]
            {
                let original = record(spec, last, next);
                let stored = encode(&original);
                let decoded = decode(original.name.clone(), &stored).expect("readable");
                assert_eq!(decoded, original, "{stored:?}");
            }
        }
    }

    #[test]
    fn the_stored_form_is_three_integers_then_the_spec() {
        let stored = encode(&record("a|b\nc", Some(at(0)), None));
        assert_eq!(stored, "1893456000000000||1893456005000000|a|b\nc");
        let decoded = decode("n".to_owned(), "-1|2|3|x|y").expect("readable");
        assert_eq!(decoded.name, "n");
        assert_eq!(decoded.spec, "x|y");
        assert_eq!(decoded.last_tick.map(micros), Some(-1));
        assert_eq!(decoded.next_tick.map(micros), Some(2));
        assert_eq!(micros(decoded.updated_at), 3);
    }

    #[test]
    fn ticks_are_whole_microseconds() {
        let tick = at(0) + chrono::Duration::microseconds(123_456);
        assert_eq!(tick_arg(Some(tick)), "1893456000123456");
        assert_eq!(tick_arg(None), "");
    }

    #[test]
    fn an_unreadable_record_is_corrupt_data() {
        for stored in ["", "1|2|3", "x|2|3|spec", "1|2||spec", "1|9999999999999999999999|3|spec"] {
            let error = decode("n".to_owned(), stored).expect_err(stored);
            assert_eq!(error.kind(), Some(ErrorKind::CorruptData), "{stored:?}");
            assert!(error.to_string().contains("periodic record of `n`"), "{error}");
        }
    }
}
