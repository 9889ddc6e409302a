//! The key layout (documented in the crate docs): global keys share the hash tag
//! `{<prefix>}`, the keys of one queue share `{<prefix>:<queue>}`.

use haul_core::JobId;
use sha2::{Digest, Sha256};

/// Every key set of one queue, in the order the scripts take them (see `lua/lib.lua`).
pub(crate) const QUEUE_SETS: [&str; 7] =
    ["scheduled", "available", "running", "retryable", "completed", "discarded", "cancelled"];

/// How many keys each queue group passes to a script ([`QueueKeys::group`]; the
/// `GROUP_SIZE` of `lua/lib.lua`): the state sets, the paused flag, the limits, the
/// running jobs per limit key and the queue's recent starts.
pub(crate) const GROUP_SIZE: usize = QUEUE_SETS.len() + 4;

/// Key names under one (validated) prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`, which the caller has validated as a namespace.
    pub(crate) fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// The prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Sorted set of every job, score 0, members `<id>:<queue>` (so ids sort by creation).
    pub(crate) fn jobs(&self) -> String {
        format!("haul:{{{}}}:jobs", self.prefix)
    }

    /// Set of the names of queues that have (or had) jobs or were paused.
    pub(crate) fn queues(&self) -> String {
        format!("haul:{{{}}}:queues", self.prefix)
    }

    /// Sorted set of the jobs enqueued with a uniqueness key, score 0, members
    /// `<key digest>:<id>:<queue>` (see [`unique_member`]).
    pub(crate) fn unique(&self) -> String {
        format!("haul:{{{}}}:unique", self.prefix)
    }

    /// The layout-version marker: a string holding the version of the key layout the
    /// prefix was set up for (see [`crate::layout`]), in the prefix's own slot.
    pub(crate) fn layout(&self) -> String {
        format!("haul:{{{}}}:layout", self.prefix)
    }

    /// The worker registry: a hash of worker id -> the worker's record (a JSON object
    /// holding its beat's fields, `last_seen_at` and `expires_at`).
    pub(crate) fn workers(&self) -> String {
        format!("haul:{{{}}}:workers", self.prefix)
    }

    /// The registry's expiry index: a sorted set of worker ids scored by the
    /// `expires_at` of their record.
    pub(crate) fn workers_expiry(&self) -> String {
        format!("haul:{{{}}}:workers:expiry", self.prefix)
    }

    /// The leadership of the prefix: a hash with `worker_id`, `term` and `expires_at`
    /// (only `term` once released, so that terms keep counting up).
    pub(crate) fn leader(&self) -> String {
        format!("haul:{{{}}}:leader", self.prefix)
    }

    /// The records of the periodic schedules: a hash of schedule name -> its record,
    /// `<last_tick>|<next_tick>|<updated_at>|<spec>` (see `crate::ops::periodic`).
    pub(crate) fn periodic(&self) -> String {
        format!("haul:{{{}}}:periodic", self.prefix)
    }

    /// The per-queue, per-minute throughput counts: a hash of `c:<minute>:<queue>`
    /// -> completed attempts and `f:<minute>:<queue>` -> failed attempts, where
    /// `<minute>` is the minute's start in seconds since the Unix epoch (see
    /// `crate::ops::throughput`).
    pub(crate) fn throughput(&self) -> String {
        format!("haul:{{{}}}:throughput", self.prefix)
    }

    /// The index of the throughput counts: a sorted set of `<minute>:<queue>` scored
    /// by the minute, for reading from a minute on and dropping old minutes.
    pub(crate) fn throughput_minutes(&self) -> String {
        format!("haul:{{{}}}:throughput:minutes", self.prefix)
    }

    /// The index of the queues with stored limits: a sorted set of queue names, all
    /// scores 0 (so in byte order). Each queue's limits are in its own slot
    /// ([`QueueKeys::limits`]), which claims read; this index only lists them, and may
    /// name a queue whose limits were just removed (readers skip it).
    pub(crate) fn limits(&self) -> String {
        format!("haul:{{{}}}:limits", self.prefix)
    }

    /// The prefix-level keys that hold data (not the channel), for `purge` on a
    /// cluster: the jobs index, the queue set, the unique index, the layout marker,
    /// the worker registry and its expiry index, the leadership, the periodic
    /// schedules' records, the throughput counts and their index, and the index of
    /// queue limits.
    pub(crate) fn globals(&self) -> [String; 11] {
        [
            self.jobs(),
            self.queues(),
            self.unique(),
            self.layout(),
            self.workers(),
            self.workers_expiry(),
            self.leader(),
            self.periodic(),
            self.throughput(),
            self.throughput_minutes(),
            self.limits(),
        ]
    }

    /// The pub/sub channel of wake-ups; messages are queue names.
    pub(crate) fn channel(&self) -> String {
        format!("haul:{{{}}}:wakeup", self.prefix)
    }

    /// The `SCAN` patterns that match every key of this prefix.
    pub(crate) fn patterns(&self) -> [String; 2] {
        [format!("haul:{{{}}}:*", self.prefix), format!("haul:{{{}:*", self.prefix)]
    }

    /// The keys of one queue.
    pub(crate) fn queue(&self, queue: &str) -> QueueKeys {
        QueueKeys { base: format!("haul:{{{}:{}}}:", self.prefix, queue), queue: queue.to_owned() }
    }
}

/// The digest of a uniqueness key, as the unique index and the job hash's
/// `unique_digest` field hold it: SHA-256 of the key's UTF-8 bytes, 64 lowercase hex
/// digits. Members stay short whatever the key's length; the job hash keeps the key.
pub(crate) fn unique_digest(key: &str) -> String {
    use std::fmt::Write as _;
    Sha256::digest(key.as_bytes()).iter().fold(String::with_capacity(64), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// The start of every member of the unique index for the key whose digest is `digest`.
pub(crate) fn unique_prefix(digest: &str) -> String {
    format!("{digest}:")
}

/// The member of the unique index for job `id` of `queue` whose key has the digest
/// `digest` (`lua/lib.lua`'s `unique_member` builds the same).
pub(crate) fn unique_member(digest: &str, id: JobId, queue: &str) -> String {
    format!("{digest}:{id}:{queue}")
}

/// The keys of one queue (all in the slot of the hash tag `{<prefix>:<queue>}`).
#[derive(Clone, Debug)]
pub(crate) struct QueueKeys {
    base: String,
    queue: String,
}

impl QueueKeys {
    /// The queue name.
    pub(crate) fn name(&self) -> &str {
        &self.queue
    }

    /// The [`GROUP_SIZE`] keys of the queue group, in script order: the state sets, the paused
    /// flag, the limits, the running jobs per limit key, then the queue's recent starts.
    pub(crate) fn group(&self) -> impl Iterator<Item = String> + '_ {
        QUEUE_SETS.iter().map(|set| format!("{}{set}", self.base)).chain([
            self.paused(),
            self.limits(),
            self.key_running(),
            self.starts(),
        ])
    }

    /// The ready set: available jobs in claim order.
    pub(crate) fn available(&self) -> String {
        format!("{}available", self.base)
    }

    /// The running set: running jobs scored by their lease deadline.
    pub(crate) fn running(&self) -> String {
        format!("{}running", self.base)
    }

    /// The paused flag (exists when the queue is paused).
    pub(crate) fn paused(&self) -> String {
        format!("{}paused", self.base)
    }

    /// The queue's limits (a hash, fields `concurrency`: the most running jobs,
    /// `key_concurrency`: the most running jobs per limit key, `rate_starts` and
    /// `rate_period_ms`: the most starts of the queue per period, `key_rate_starts` and
    /// `key_rate_period_ms`: the most starts per limit key per period; each present
    /// when set), absent when the queue has none; claims read it atomically with the
    /// running set and the start sets.
    pub(crate) fn limits(&self) -> String {
        format!("{}limits", self.base)
    }

    /// The running jobs per limit key: a hash of limit key -> how many of the queue's
    /// running jobs have that key (no field for none; no hash when no running job has
    /// a key). `claim.lua` adds a job when it claims it, and `release` in `lua/lib.lua`
    /// takes it away, whatever the queue's limits, so a limit set later counts the jobs
    /// already running.
    pub(crate) fn key_running(&self) -> String {
        format!("{}key_running", self.base)
    }

    /// The queue's recent starts, for its rate limit: a sorted set of the lease tokens
    /// of claims scored by the claim's time in ms. `claim.lua` adds each job it claims
    /// while the queue has a rate limit, keeps only the starts within the period, at
    /// most the limit's `starts` of them (the latest), and makes the set expire after
    /// the period, so an idle queue's set goes away; absent: no start.
    pub(crate) fn starts(&self) -> String {
        format!("{}starts", self.base)
    }

    /// The recent starts of one limit key of the queue, for its rate limit per key:
    /// kept like [`QueueKeys::starts`], for the jobs with that key, in the queue's slot.
    /// `claim.lua` names it itself (`key_starts` in `lua/lib.lua`).
    #[cfg(test)]
    pub(crate) fn key_starts(&self, limit_key: &str) -> String {
        format!("{}:{limit_key}", self.starts())
    }

    /// The prefix of job hash keys: `<prefix of the queue>job:`.
    pub(crate) fn job_prefix(&self) -> String {
        format!("{}job:", self.base)
    }

    /// The hash of one job.
    pub(crate) fn job(&self, id: JobId) -> String {
        format!("{}job:{id}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_queue_shares_its_hash_tag() {
        let keys = Keys::new("app");
        let queue = keys.queue("mail.high");
        for key in queue.group().chain([queue.job(JobId::new()), queue.job_prefix()]) {
            assert!(key.starts_with("haul:{app:mail.high}:"), "{key}");
        }
        assert!(queue.key_starts("customer:7").starts_with("haul:{app:mail.high}:"));
        assert_eq!(
            queue.group().count(),
            GROUP_SIZE,
            "the state sets, the paused flag, the limits, the key counts, the starts"
        );
        assert_eq!(GROUP_SIZE, 11);
        let tail: Vec<String> = queue.group().skip(GROUP_SIZE - 3).collect();
        assert_eq!(
            tail,
            [queue.limits(), queue.key_running(), queue.starts()],
            "lib.lua reads the limits, then the key counts, then the starts"
        );
        for key in keys.globals().into_iter().chain([keys.channel()]) {
            assert!(key.starts_with("haul:{app}:"), "{key}");
        }
    }

    #[test]
    fn a_unique_member_is_the_key_digest_then_the_job() {
        // printf 'é' | sha256sum
        let digest = unique_digest("é");
        assert_eq!(digest, "4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c");
        assert_eq!(unique_digest(&"k".repeat(8192)).len(), 64);
        let id = JobId::new();
        let member = unique_member(&digest, id, "mail");
        assert_eq!(member, format!("{digest}:{id}:mail"));
        assert!(member.starts_with(&unique_prefix(&digest)));
    }

    #[test]
    fn the_scan_patterns_match_only_this_prefix() {
        let patterns = Keys::new("t1").patterns();
        assert_eq!(patterns, ["haul:{t1}:*".to_owned(), "haul:{t1:*".to_owned()]);
        assert_eq!(Keys::new("t1").layout(), "haul:{t1}:layout", "purge's first pattern matches the marker");
        for key in Keys::new("t1").globals() {
            assert!(key.starts_with("haul:{t1}:"), "purge's first pattern matches {key}");
        }
        assert_eq!(Keys::new("t1").workers(), "haul:{t1}:workers");
        assert_eq!(Keys::new("t1").workers_expiry(), "haul:{t1}:workers:expiry");
        assert_eq!(Keys::new("t1").leader(), "haul:{t1}:leader");
        assert_eq!(Keys::new("t1").periodic(), "haul:{t1}:periodic");
        assert_eq!(Keys::new("t1").throughput(), "haul:{t1}:throughput");
        assert_eq!(Keys::new("t1").throughput_minutes(), "haul:{t1}:throughput:minutes");
        assert_eq!(Keys::new("t1").limits(), "haul:{t1}:limits");
        assert_eq!(Keys::new("t1").queue("q").limits(), "haul:{t1:q}:limits");
        assert_eq!(Keys::new("t1").queue("q").key_running(), "haul:{t1:q}:key_running");
        assert_eq!(Keys::new("t1").queue("q").starts(), "haul:{t1:q}:starts");
        assert_eq!(Keys::new("t1").queue("q").key_starts("k:1"), "haul:{t1:q}:starts:k:1");
        let other = Keys::new("t10");
        assert!(!other.jobs().starts_with("haul:{t1}:") && !other.queue("q").paused().starts_with("haul:{t1:"));
    }
}
