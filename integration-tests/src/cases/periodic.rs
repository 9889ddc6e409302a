//! Periodic jobs: the storage of each schedule's record, the scheduler pass that
//! enqueues each due tick once, and the worker runtime that runs it while it leads.
//!
//! Storage and scheduler cases pass an explicit `now` to every call and move the clock
//! instead of sleeping. Most use [`every_minute`], whose ticks fall on the base time's
//! whole minutes ([`at`]`(0)`, `at(60)`, …). The runtime case runs real workers and
//! waits for storage states with a generous deadline.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use haul::{
    Error, JobError, JobOutcome, JobRecord, JobState, Missed, Periodic, Schedule, Worker,
    periodic::{DueTicks, PeriodicScheduler},
    storage::{ListParams, PeriodicRecord, PeriodicUpdate},
};
use tokio::sync::Barrier;

use super::{jobs::Tracker, worker::RunningWorker, *};

/// The kind name of [`PeriodicTick`] jobs.
pub const TICK_KIND: &str = "haul_tests.periodic_tick";

/// The default queue of [`PeriodicTick`] jobs, which no worker of the suite serves.
pub const TICK_QUEUE: &str = "p.ticks";

/// The priority of [`PeriodicTick`] jobs (not the default, so a case can tell it was kept).
pub const TICK_PRIORITY: i16 = 3;

/// The attempts of [`PeriodicTick`] jobs (not the default, so a case can tell it was kept).
pub const TICK_MAX_ATTEMPTS: u32 = 4;

/// The job periodic cases enqueue: it carries a label and succeeds.
#[haul::job(name = "haul_tests.periodic_tick", queue = "p.ticks", priority = 3, max_attempts = 4)]
pub async fn periodic_tick(label: String) -> Result<(), JobError> {
    let _ = label;
    Ok(())
}

/// How late a tick may be dealt with before it counts as missed, in scheduler cases.
pub const LATE_AFTER: Duration = Duration::from_secs(30);

/// A schedule named `name` that enqueues a [`PeriodicTick`] labelled `name` every minute.
pub fn every_minute(name: &str) -> Periodic {
    let schedule = Schedule::every(Duration::from_secs(60)).expect("one minute is a valid interval");
    Periodic::new(name, schedule, PeriodicTick::new(name)).expect("a valid periodic job")
}

/// A scheduler of `jobs` that counts ticks older than [`LATE_AFTER`] as missed.
pub fn scheduler(jobs: Vec<Periodic>) -> PeriodicScheduler {
    PeriodicScheduler::new(jobs, LATE_AFTER).expect("a valid scheduler")
}

/// Runs one scheduler pass at `now`.
async fn run_due(scheduler: &PeriodicScheduler, storage: &TestStorage, now: Timestamp) -> DueTicks {
    scheduler.run_due(storage.as_ref(), Some(now)).await.expect("run_due succeeds")
}

async fn save(storage: &TestStorage, update: PeriodicUpdate) {
    storage.save_periodic(update).await.expect("save_periodic succeeds");
}

async fn records(storage: &TestStorage) -> Vec<PeriodicRecord> {
    storage.list_periodic().await.expect("list_periodic succeeds")
}

/// The record of schedule `name`, which must exist.
async fn record(storage: &TestStorage, name: &str) -> PeriodicRecord {
    records(storage)
        .await
        .into_iter()
        .find(|record| record.name == name)
        .unwrap_or_else(|| panic!("schedule {name} has a record"))
}

/// A record's fields, to compare with what a case expects:
/// `(name, spec, last_tick, next_tick, updated_at)`.
type Fields = (String, String, Option<Timestamp>, Option<Timestamp>, Timestamp);

fn fields(record: &PeriodicRecord) -> Fields {
    (record.name.clone(), record.spec.clone(), record.last_tick, record.next_tick, record.updated_at)
}

fn expected(
    name: &str,
    spec: &str,
    last_tick: Option<Timestamp>,
    next_tick: Option<Timestamp>,
    updated_at: Timestamp,
) -> Fields {
    (name.to_owned(), spec.to_owned(), last_tick, next_tick, updated_at)
}

/// An update of `name` with `spec`, `last_tick` and `next_tick`, at `now`.
fn update(
    name: &str,
    spec: &str,
    last_tick: Option<Timestamp>,
    next_tick: Option<Timestamp>,
    now: Timestamp,
) -> PeriodicUpdate {
    let mut update = PeriodicUpdate::new(name, spec).now(now);
    update.last_tick = last_tick;
    update.next_tick = next_tick;
    update
}

/// Every stored job, of any queue and state.
async fn stored_jobs(storage: &TestStorage) -> Vec<JobRecord> {
    storage.list(ListParams::new().limit(1_000)).await.expect("list succeeds")
}

/// The stored jobs' uniqueness keys, in id order.
async fn stored_keys(storage: &TestStorage) -> Vec<Option<String>> {
    stored_jobs(storage).await.into_iter().map(|job| job.unique_key).collect()
}

/// A timestamp written in RFC 3339.
fn utc(text: &str) -> Timestamp {
    text.parse().unwrap_or_else(|error| panic!("{text} is a valid timestamp: {error}"))
}

// The storage contract.

/// A saved record is listed with every field as given (`updated_at` is the update's
/// `now`), records list in name order, and a spec with quotes, unicode, `|`, newlines
/// and tabs comes back exactly.
pub async fn a_saved_record_is_listed_with_every_field_as_given(storage: TestStorage) {
    let odd_spec = "cron \"0 3 * * *\" in Europe/Paris | ünïcødé ✓ 日本 'quoted' \\ 100%\nsecond line\tand a tab";
    save(&storage, update("gamma", "every 60s", Some(at(60)), Some(at(120)), at(61))).await;
    save(&storage, update("alpha", odd_spec, Some(at(-3_600)), Some(at(86_400)), at(5))).await;
    save(&storage, update("beta", "cron \"*/5 * * * *\"", None, None, at(7))).await;

    let listed = records(&storage).await;
    assert_eq!(
        listed.iter().map(fields).collect::<Vec<_>>(),
        vec![
            expected("alpha", odd_spec, Some(at(-3_600)), Some(at(86_400)), at(5)),
            expected("beta", "cron \"*/5 * * * *\"", None, None, at(7)),
            expected("gamma", "every 60s", Some(at(60)), Some(at(120)), at(61)),
        ],
        "every record, in name order, with its fields as saved"
    );
}

/// An update of the stored spec whose `last_tick` is earlier than the stored one
/// changes nothing: not the next tick, not `updated_at`.
pub async fn an_update_with_an_earlier_tick_changes_nothing(storage: TestStorage) {
    save(&storage, update("nightly", "every 60s", Some(at(120)), Some(at(180)), at(121))).await;
    save(&storage, update("nightly", "every 60s", Some(at(60)), Some(at(90)), at(150))).await;

    assert_eq!(
        records(&storage).await.iter().map(fields).collect::<Vec<_>>(),
        vec![expected("nightly", "every 60s", Some(at(120)), Some(at(180)), at(121))],
        "the stale update left the record as it was"
    );
}

/// An update of another spec (a changed schedule) is never stale: with an earlier
/// `last_tick` it takes the spec, next tick and `updated_at`, and the later last tick
/// stays.
pub async fn an_update_of_another_spec_takes_the_record_whatever_its_tick(storage: TestStorage) {
    save(&storage, update("nightly", "every 60s", Some(at(120)), Some(at(180)), at(121))).await;
    save(&storage, update("nightly", "every 1h", Some(at(0)), Some(at(3_600)), at(150))).await;

    assert_eq!(
        records(&storage).await.iter().map(fields).collect::<Vec<_>>(),
        vec![expected("nightly", "every 1h", Some(at(120)), Some(at(3_600)), at(150))],
        "the new spec's record, the stored tick kept"
    );
}

/// An update with no `last_tick` keeps the stored one but takes the new spec, next
/// tick and `updated_at`; a later `last_tick` then replaces the stored one.
pub async fn an_update_without_a_tick_keeps_the_stored_one_and_a_later_tick_replaces_it(storage: TestStorage) {
    save(&storage, update("digest", "every 60s", Some(at(60)), Some(at(120)), at(61))).await;

    save(&storage, update("digest", "every 2m", None, Some(at(240)), at(70))).await;
    assert_eq!(
        fields(&record(&storage, "digest").await),
        expected("digest", "every 2m", Some(at(60)), Some(at(240)), at(70)),
        "no tick given: the stored tick stays, the rest is the update's"
    );

    save(&storage, update("digest", "every 2m", Some(at(240)), Some(at(360)), at(241))).await;
    assert_eq!(
        fields(&record(&storage, "digest").await),
        expected("digest", "every 2m", Some(at(240)), Some(at(360)), at(241)),
        "a later tick replaces the stored one"
    );
}

/// An update at the stored tick itself is not stale: it takes the new spec, next tick
/// and `updated_at` (what a scheduler that found the tick's job already stored saves).
pub async fn an_update_at_the_stored_tick_takes_the_new_spec_and_next_tick(storage: TestStorage) {
    save(&storage, update("digest", "every 60s", Some(at(60)), Some(at(120)), at(61))).await;
    save(&storage, update("digest", "every 90s", Some(at(60)), None, at(62))).await;

    assert_eq!(fields(&record(&storage, "digest").await), expected("digest", "every 90s", Some(at(60)), None, at(62)),);
}

/// Deleting a record returns true, then false; the record is no longer listed (the
/// others are); saving it again creates it afresh, an earlier tick included.
pub async fn a_deleted_record_is_gone_until_saved_again(storage: TestStorage) {
    save(&storage, update("hourly", "every 1h", Some(at(3_600)), Some(at(7_200)), at(3_601))).await;
    save(&storage, update("keep", "every 60s", Some(at(60)), Some(at(120)), at(61))).await;

    assert!(storage.delete_periodic("hourly").await.expect("delete_periodic succeeds"), "there was a record");
    assert!(!storage.delete_periodic("hourly").await.expect("delete_periodic succeeds"), "it is gone");
    assert!(!storage.delete_periodic("unknown").await.expect("delete_periodic succeeds"), "never saved");
    assert_eq!(
        records(&storage).await.iter().map(|record| record.name.as_str()).collect::<Vec<_>>(),
        vec!["keep"],
        "only the other record is left"
    );

    save(&storage, update("hourly", "every 2h", Some(at(0)), Some(at(7_200)), at(10))).await;
    assert_eq!(
        fields(&record(&storage, "hourly").await),
        expected("hourly", "every 2h", Some(at(0)), Some(at(7_200)), at(10)),
        "a new record, whose tick is earlier than the deleted one's"
    );
}

/// Sixteen saves of one record racing, each with its own tick: the record ends with
/// the latest tick, and with the rest of that update (the earlier ones that applied
/// after it were stale).
pub async fn racing_saves_keep_the_latest_tick(storage: TestStorage) {
    const RACERS: i64 = 16;
    let start = Arc::new(Barrier::new(usize::try_from(RACERS).expect("a small count")));
    let mut racers = Vec::new();
    for n in 0..RACERS {
        let storage = storage.clone();
        let start = Arc::clone(&start);
        racers.push(tokio::spawn(async move {
            let racer = update("raced", "every 60s", Some(at(n * 60)), Some(at(n * 60 + 1)), at(n));
            start.wait().await;
            save(&storage, racer).await;
        }));
    }
    for racer in racers {
        racer.await.expect("racer task finishes");
    }

    let last = RACERS - 1;
    assert_eq!(
        records(&storage).await.iter().map(fields).collect::<Vec<_>>(),
        vec![expected("raced", "every 60s", Some(at(last * 60)), Some(at(last * 60 + 1)), at(last))],
        "one record, the latest tick's"
    );
}

// The scheduler.

/// The first pass records a new schedule from its latest tick and enqueues nothing.
/// Once the next tick has come, one pass stores one job for it: the template's kind,
/// arguments, queue, priority and attempts, unique by [`Periodic::tick_key`]. Passes
/// before the following tick store nothing more.
pub async fn the_first_pass_records_the_schedule_and_the_next_tick_enqueues_once(storage: TestStorage) {
    let minutely = every_minute("minutely").queue("p.first").priority(-5);
    let scheduler = scheduler(vec![minutely.clone()]);

    let first = run_due(&scheduler, &storage, at(10)).await;
    assert_eq!(first.first_seen, vec!["minutely"], "seen for the first time");
    assert!(first.enqueued.is_empty() && first.duplicates.is_empty() && first.skipped.is_empty(), "{first:?}");
    assert_eq!(
        fields(&record(&storage, "minutely").await),
        expected("minutely", "every 60s", Some(at(0)), Some(at(60)), at(10)),
        "recorded from the latest tick, with the next one"
    );
    assert!(stored_jobs(&storage).await.is_empty(), "a new schedule enqueues nothing");

    let due = run_due(&scheduler, &storage, at(61)).await;
    assert_eq!(due.enqueued.len(), 1, "one job for the tick: {due:?}");
    let (name, tick, id) = due.enqueued[0].clone();
    assert_eq!((name.as_str(), tick), ("minutely", at(60)));
    assert!(due.duplicates.is_empty() && due.skipped.is_empty() && due.first_seen.is_empty(), "{due:?}");

    let job = get(&storage, id).await;
    assert_eq!(job.kind, TICK_KIND);
    assert_eq!(job.args, serde_json::json!({ "label": "minutely" }));
    assert_eq!(job.queue, "p.first", "the periodic job's queue");
    assert_eq!(job.priority, -5, "the periodic job's priority");
    assert_eq!(job.max_attempts, TICK_MAX_ATTEMPTS, "the kind's attempts");
    assert_eq!(job.state, JobState::Available);
    assert_eq!(job.unique_key, Some(minutely.tick_key(at(60))));
    assert_eq!(minutely.tick_key(at(60)), "periodic:minutely:2030-01-01T00:01:00.000000Z");
    assert_eq!(
        fields(&record(&storage, "minutely").await),
        expected("minutely", "every 60s", Some(at(60)), Some(at(120)), at(61)),
    );

    for now in [at(61), at(62), at(119)] {
        assert_eq!(run_due(&scheduler, &storage, now).await, DueTicks::default(), "nothing is due at {now}");
    }
    assert_eq!(stored_keys(&storage).await, vec![Some(minutely.tick_key(at(60)))], "still one job");
}

/// Eight schedulers running the same due tick at once store exactly one job for it:
/// one reports it enqueued, any other that got that far reports that job as a
/// duplicate, and the record holds the tick.
pub async fn racing_schedulers_store_one_job_per_tick(storage: TestStorage) {
    const SCHEDULERS: usize = 8;
    let minutely = every_minute("raced");
    let scheduler = scheduler(vec![minutely.clone()]);
    run_due(&scheduler, &storage, at(10)).await;

    let start = Arc::new(Barrier::new(SCHEDULERS));
    let mut racers = Vec::new();
    for n in 0..SCHEDULERS {
        let (storage, scheduler, start) = (storage.clone(), scheduler.clone(), Arc::clone(&start));
        racers.push(tokio::spawn(async move {
            start.wait().await;
            run_due(&scheduler, &storage, at(61 + i64::try_from(n).expect("a small count"))).await
        }));
    }
    let mut enqueued = Vec::new();
    let mut duplicates = Vec::new();
    for racer in racers {
        let due = racer.await.expect("scheduler task finishes");
        assert!(due.skipped.is_empty() && due.first_seen.is_empty(), "{due:?}");
        enqueued.extend(due.enqueued);
        duplicates.extend(due.duplicates);
    }

    assert_eq!(enqueued.len(), 1, "exactly one scheduler stored the tick's job: {enqueued:?}");
    let (name, tick, id) = enqueued[0].clone();
    assert_eq!((name.as_str(), tick), ("raced", at(60)));
    for duplicate in &duplicates {
        assert_eq!(duplicate, &("raced".to_owned(), at(60), id), "a duplicate names the stored job");
    }
    let jobs = stored_jobs(&storage).await;
    assert_eq!(ids_of(&jobs), vec![id], "one job stored");
    assert_eq!(jobs[0].unique_key, Some(minutely.tick_key(at(60))));
    assert_eq!(record(&storage, "raced").await.last_tick, Some(at(60)));
}

/// A scheduler that acts late on a tick another one already enqueued and recorded
/// (same tick, later `now`) stores nothing and reports nothing.
pub async fn a_late_scheduler_does_nothing_for_a_recorded_tick(storage: TestStorage) {
    let minutely = every_minute("late");
    let first = scheduler(vec![minutely.clone()]);
    let late = scheduler(vec![minutely.clone()]);
    run_due(&first, &storage, at(10)).await;
    let due = run_due(&first, &storage, at(61)).await;
    assert_eq!(due.enqueued.len(), 1, "{due:?}");

    assert_eq!(run_due(&late, &storage, at(75)).await, DueTicks::default(), "the tick was dealt with");
    assert_eq!(stored_keys(&storage).await, vec![Some(minutely.tick_key(at(60)))], "still one job");
}

/// A tick whose job already completed is never stored again, even by a scheduler that
/// believes it is still due. The case gives the record the older tick back (delete,
/// then save the older tick: what a scheduler that read the record before the first
/// one saved it sees), so the second scheduler really enqueues the tick's job; its
/// uniqueness key, which blocks in every state, turns it into a duplicate.
pub async fn a_tick_whose_job_completed_is_not_stored_again(storage: TestStorage) {
    let minutely = every_minute("done");
    let first = scheduler(vec![minutely.clone()]);
    run_due(&first, &storage, at(10)).await;
    let due = run_due(&first, &storage, at(61)).await;
    let (_, _, id) = due.enqueued.first().cloned().unwrap_or_else(|| panic!("the tick is enqueued: {due:?}"));
    let claimed = claim_only(&storage, TICK_QUEUE, id, at(62)).await;
    report_applied(&storage, claim_of(&claimed), JobOutcome::Completed, at(63)).await;
    assert_eq!(state_of(&storage, id).await, JobState::Completed);

    assert!(storage.delete_periodic("done").await.expect("delete_periodic succeeds"));
    save(&storage, update("done", "every 60s", Some(at(0)), Some(at(60)), at(10))).await;

    let stale = scheduler(vec![minutely.clone()]);
    let again = run_due(&stale, &storage, at(64)).await;
    assert!(again.enqueued.is_empty(), "the completed tick is not enqueued again: {again:?}");
    assert_eq!(again.duplicates, vec![("done".to_owned(), at(60), id)], "the completed job blocks it");
    let jobs = stored_jobs(&storage).await;
    assert_eq!(ids_of(&jobs), vec![id], "still the one job");
    assert_eq!(jobs[0].state, JobState::Completed);
    assert_eq!(record(&storage, "done").await.last_tick, Some(at(60)), "the tick is recorded again");
}

/// With [`Missed::RunOnce`] (the default), a pass long after several ticks went by
/// stores one job, for the latest of them, even when it is itself late.
pub async fn missed_ticks_run_once_for_the_latest(storage: TestStorage) {
    let minutely = every_minute("catch-up");
    assert_eq!(minutely.missed_ticks(), Missed::RunOnce, "the default");
    let scheduler = scheduler(vec![minutely.clone()]);
    run_due(&scheduler, &storage, at(10)).await;

    // Ticks at 60, 120 … 300 went by; the latest is 45 s old, more than LATE_AFTER.
    let due = run_due(&scheduler, &storage, at(345)).await;
    assert_eq!(due.enqueued.len(), 1, "one job: {due:?}");
    assert_eq!((due.enqueued[0].0.as_str(), due.enqueued[0].1), ("catch-up", at(300)), "for the latest tick");
    assert!(due.skipped.is_empty() && due.duplicates.is_empty(), "{due:?}");
    assert_eq!(stored_keys(&storage).await, vec![Some(minutely.tick_key(at(300)))]);
    let stored = record(&storage, "catch-up").await;
    assert_eq!((stored.last_tick, stored.next_tick), (Some(at(300)), Some(at(360))));
}

/// With [`Missed::Skip`], a pass long after several ticks went by stores nothing and
/// records the latest tick as skipped; the next tick dealt with on time is enqueued.
pub async fn missed_ticks_are_skipped_when_the_schedule_says_so(storage: TestStorage) {
    let minutely = every_minute("skipper").missed(Missed::Skip);
    let scheduler = scheduler(vec![minutely.clone()]);
    run_due(&scheduler, &storage, at(10)).await;

    let due = run_due(&scheduler, &storage, at(345)).await;
    assert_eq!(due.skipped, vec![("skipper".to_owned(), at(300))], "{due:?}");
    assert!(due.enqueued.is_empty() && due.duplicates.is_empty(), "{due:?}");
    assert!(stored_jobs(&storage).await.is_empty(), "no job for a skipped tick");
    assert_eq!(record(&storage, "skipper").await.last_tick, Some(at(300)), "the record moved on");

    let on_time = run_due(&scheduler, &storage, at(365)).await;
    assert_eq!(on_time.enqueued.len(), 1, "the next tick, 5 s old, is enqueued: {on_time:?}");
    assert_eq!(on_time.enqueued[0].1, at(360));
    assert_eq!(stored_keys(&storage).await, vec![Some(minutely.tick_key(at(360)))]);
}

/// A tick dealt with exactly `late_after` after its time is on time: even a schedule
/// that skips missed ticks enqueues it.
pub async fn a_tick_exactly_late_after_old_is_on_time(storage: TestStorage) {
    let minutely = every_minute("edge").missed(Missed::Skip);
    let scheduler = scheduler(vec![minutely.clone()]);
    run_due(&scheduler, &storage, at(10)).await;

    let late_after = i64::try_from(LATE_AFTER.as_secs()).expect("a small duration");
    let due = run_due(&scheduler, &storage, at(60 + late_after)).await;
    assert!(due.skipped.is_empty(), "{due:?}");
    assert_eq!(due.enqueued.len(), 1, "{due:?}");
    assert_eq!(stored_keys(&storage).await, vec![Some(minutely.tick_key(at(60)))]);
}

/// A cron schedule in a named zone ticks at its local time across a daylight saving
/// change: `0 3 * * *` in Paris is 02:00 UTC on 2026-03-28 and 01:00 UTC from
/// 2026-03-29 on. Each tick's job carries the tick's UTC instant in its key, and the
/// winter-time instant after the change is no tick.
pub async fn a_cron_schedule_in_a_zone_follows_daylight_saving_time(storage: TestStorage) {
    let schedule = Schedule::cron_in("0 3 * * *", "Europe/Paris").expect("a valid schedule");
    let nightly = Periodic::new("paris-nightly", schedule, PeriodicTick::new("paris")).expect("a valid periodic job");
    let scheduler = scheduler(vec![nightly.clone()]);

    let first = run_due(&scheduler, &storage, utc("2026-03-28T12:00:00Z")).await;
    assert_eq!(first.first_seen, vec!["paris-nightly"]);
    let stored = record(&storage, "paris-nightly").await;
    assert_eq!(stored.spec, "cron \"0 3 * * *\" in Europe/Paris");
    assert_eq!(stored.last_tick, Some(utc("2026-03-28T02:00:00Z")), "03:00 CET");
    assert_eq!(stored.next_tick, Some(utc("2026-03-29T01:00:00Z")), "03:00 CEST");

    let due = run_due(&scheduler, &storage, utc("2026-03-29T01:00:05Z")).await;
    assert_eq!(due.enqueued.len(), 1, "{due:?}");
    assert_eq!(due.enqueued[0].1, utc("2026-03-29T01:00:00Z"));
    assert_eq!(
        run_due(&scheduler, &storage, utc("2026-03-29T02:00:05Z")).await,
        DueTicks::default(),
        "03:00 CET no longer exists"
    );
    let due = run_due(&scheduler, &storage, utc("2026-03-30T01:00:05Z")).await;
    assert_eq!(due.enqueued.len(), 1, "{due:?}");

    assert_eq!(
        stored_keys(&storage).await,
        vec![
            Some("periodic:paris-nightly:2026-03-29T01:00:00.000000Z".to_owned()),
            Some("periodic:paris-nightly:2026-03-30T01:00:00.000000Z".to_owned()),
        ]
    );
}

/// The upcoming run times, per schedule and for each one, are its next ticks after the
/// given time; the record of each schedule holds its next tick after the pass's `now`.
pub async fn upcoming_runs_and_the_recorded_next_tick_follow_the_schedule(storage: TestStorage) {
    let minutely = every_minute("minutely");
    let daily = Schedule::cron("0 3 * * *").expect("a valid schedule");
    let nightly = Periodic::new("nightly", daily.clone(), PeriodicTick::new("nightly")).expect("a valid periodic job");
    let scheduler = scheduler(vec![minutely.clone(), nightly.clone()]);
    let hour = 3_600;

    assert_eq!(minutely.upcoming(at(10), 3), vec![at(60), at(120), at(180)]);
    assert_eq!(nightly.upcoming(at(10), 2), vec![at(3 * hour), at(27 * hour)]);
    assert_eq!(nightly.upcoming(at(10), 2), daily.upcoming(at(10), 2));
    assert_eq!(
        scheduler.upcoming(at(10), 2),
        vec![("minutely", vec![at(60), at(120)]), ("nightly", vec![at(3 * hour), at(27 * hour)])],
        "each schedule's, in the order declared"
    );
    assert_eq!(scheduler.next_tick_after(at(10)), Some(at(60)));

    run_due(&scheduler, &storage, at(10)).await;
    let next_ticks = |records: Vec<PeriodicRecord>| -> Vec<(String, Option<Timestamp>)> {
        records.into_iter().map(|record| (record.name, record.next_tick)).collect()
    };
    assert_eq!(
        next_ticks(records(&storage).await),
        vec![("minutely".to_owned(), Some(at(60))), ("nightly".to_owned(), Some(at(3 * hour)))]
    );
    run_due(&scheduler, &storage, at(61)).await;
    assert_eq!(
        next_ticks(records(&storage).await),
        vec![("minutely".to_owned(), Some(at(120))), ("nightly".to_owned(), Some(at(3 * hour)))]
    );
}

/// A schedule whose record was deleted is seen for the first time again: recorded from
/// its latest tick, with no job for it.
pub async fn a_schedule_whose_record_was_deleted_starts_again_without_a_job(storage: TestStorage) {
    let minutely = every_minute("renewed");
    let scheduler = scheduler(vec![minutely.clone()]);
    run_due(&scheduler, &storage, at(10)).await;
    assert!(storage.delete_periodic("renewed").await.expect("delete_periodic succeeds"));

    let due = run_due(&scheduler, &storage, at(130)).await;
    assert_eq!(due.first_seen, vec!["renewed"], "{due:?}");
    assert!(due.enqueued.is_empty(), "{due:?}");
    assert!(stored_jobs(&storage).await.is_empty());
    assert_eq!(record(&storage, "renewed").await.last_tick, Some(at(120)));
}

/// A schedule whose interval changed under the same name starts afresh: the old
/// record's last tick does not count, so the new schedule's past ticks get no job and
/// it is recorded (with its new spec) from its latest tick.
pub async fn a_schedule_changed_under_the_same_name_starts_afresh(storage: TestStorage) {
    run_due(&scheduler(vec![every_minute("reshaped")]), &storage, at(10)).await;
    let every_ten_seconds = Schedule::every(Duration::from_secs(10)).expect("ten seconds is a valid interval");
    let reshaped =
        Periodic::new("reshaped", every_ten_seconds, PeriodicTick::new("reshaped")).expect("a valid periodic job");

    let due = run_due(&scheduler(vec![reshaped.clone()]), &storage, at(35)).await;
    assert_eq!(due.first_seen, vec!["reshaped"], "{due:?}");
    assert!(stored_jobs(&storage).await.is_empty(), "no catch-up for the new schedule's past ticks");
    let record = record(&storage, "reshaped").await;
    assert_eq!((record.spec.as_str(), record.last_tick), ("every 10s", Some(at(30))));

    let due = run_due(&scheduler(vec![reshaped.clone()]), &storage, at(41)).await;
    assert_eq!(due.enqueued.iter().map(|(_, tick, _)| *tick).collect::<Vec<_>>(), vec![at(40)]);
}

/// A schedule changed to one whose latest tick is before the old record's last tick
/// (every minute, then every two minutes) is recorded with its new spec at once, and
/// its next tick gets its job: the old record does not hold it back.
pub async fn a_schedule_changed_to_sparser_ticks_starts_at_its_next_tick(storage: TestStorage) {
    run_due(&scheduler(vec![every_minute("slowed")]), &storage, at(70)).await;
    assert_eq!(record(&storage, "slowed").await.last_tick, Some(at(60)));
    let every_two_minutes = Schedule::every(Duration::from_secs(120)).expect("two minutes is a valid interval");
    let spec = every_two_minutes.to_string();
    let slowed = Periodic::new("slowed", every_two_minutes, PeriodicTick::new("slowed")).expect("a valid periodic job");
    let slowed = scheduler(vec![slowed]);

    let due = run_due(&slowed, &storage, at(100)).await;
    assert_eq!(due.first_seen, vec!["slowed"], "{due:?}");
    assert_eq!(record(&storage, "slowed").await.spec, spec, "the new spec is recorded at its first pass");
    let due = run_due(&slowed, &storage, at(110)).await;
    assert!(due.first_seen.is_empty() && due.enqueued.is_empty(), "{due:?}");

    let due = run_due(&slowed, &storage, at(121)).await;
    assert_eq!(due.enqueued.iter().map(|(_, tick, _)| *tick).collect::<Vec<_>>(), vec![at(120)]);
    assert_eq!(stored_jobs(&storage).await.len(), 1);
}

// The runtime.

/// Three workers declaring the same every-second schedule, with a short leader lease:
/// each tick's job is stored once, and the stored ticks are consecutive seconds.
pub async fn workers_sharing_a_schedule_store_each_tick_once(storage: TestStorage) {
    let schedule = Schedule::every(Duration::from_secs(1)).expect("one second is a valid interval");
    let every_second =
        Periodic::new("every-second", schedule, PeriodicTick::new("runtime")).expect("a valid periodic job");
    let tracker = Tracker::new();
    let workers: Vec<RunningWorker> = (0..3)
        .map(|n| {
            RunningWorker::start(&storage, "p.runtime.idle", &tracker, |builder| {
                builder
                    .worker_id(format!("periodic-worker-{n}"))
                    .periodic(every_second.clone())
                    .leader_lease(Duration::from_secs(1))
            })
        })
        .collect();

    eventually("jobs of 3 distinct ticks", || {
        let storage = storage.clone();
        async move {
            let keys: BTreeSet<Option<String>> = stored_keys(&storage).await.into_iter().collect();
            (keys.len() >= 3).then_some(())
        }
    })
    .await;
    for worker in workers {
        worker.stop().await;
    }

    let jobs = stored_jobs(&storage).await;
    let mut ticks = Vec::new();
    for job in &jobs {
        assert_eq!((job.kind.as_str(), job.queue.as_str()), (TICK_KIND, TICK_QUEUE));
        let key = job.unique_key.as_deref().unwrap_or_else(|| panic!("job {} has a key", job.id));
        let tick = key
            .strip_prefix("periodic:every-second:")
            .map(utc)
            .unwrap_or_else(|| panic!("{key} is a key of the schedule"));
        assert_eq!(key, every_second.tick_key(tick));
        ticks.push(tick);
    }
    ticks.sort();
    let distinct: BTreeSet<Timestamp> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "each tick's job is stored once: {ticks:?}");
    for pair in ticks.windows(2) {
        assert_eq!(pair[1] - pair[0], chrono::Duration::seconds(1), "consecutive ticks, no gap: {ticks:?}");
    }
}

// Configuration errors.

/// A worker with two periodic jobs of one name fails at start, with an error naming it,
/// before it records anything.
pub async fn periodic_jobs_sharing_a_name_fail_the_worker_at_start(storage: TestStorage) {
    let worker = Worker::builder(storage.clone())
        .queues(["p.unused"])
        .periodic(every_minute("twice"))
        .periodic(every_minute("once"))
        .periodic(every_minute("twice").priority(1))
        .build();
    let outcome = tokio::time::timeout(PATIENCE, worker.run_until(std::future::ready(())))
        .await
        .expect("the worker returns at once");
    let error = outcome.expect_err("the worker refuses to start");
    assert!(matches!(error, Error::InvalidArgument(_)), "an invalid argument: {error:?}");
    assert!(error.to_string().contains("`twice`"), "the error names the shared name: {error}");
    assert!(records(&storage).await.is_empty(), "nothing was recorded");
    assert!(storage.list_workers(None).await.expect("list_workers succeeds").is_empty(), "no worker registered");
}

/// An invalid cron expression is refused when the schedule is built, with the
/// expression and the reason in the message; so are an unknown zone and a wrong
/// number of fields.
pub async fn an_invalid_cron_expression_is_refused_with_its_reason(_storage: TestStorage) {
    let error = Schedule::cron("61 * * * *").expect_err("minute 61 does not exist");
    match &error {
        Error::InvalidSchedule { schedule, reason, .. } => {
            assert_eq!(schedule, "61 * * * *");
            assert!(!reason.is_empty(), "a reason is given");
        }
        other => panic!("an invalid schedule error, not {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("61 * * * *"), "the message shows the expression: {message}");

    let error = Schedule::cron("* * *").expect_err("three fields");
    assert!(error.to_string().contains("* * *") && error.to_string().contains("has 3 fields"), "{error}");
    let error = Schedule::cron_in("0 3 * * *", "Mars/Olympus").expect_err("an unknown zone");
    assert!(error.to_string().contains("unknown time zone `Mars/Olympus`"), "{error}");
    let error = Schedule::every(Duration::from_millis(500)).expect_err("shorter than a second");
    assert!(error.to_string().contains("at least one second"), "{error}");
}
