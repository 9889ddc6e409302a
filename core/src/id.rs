//! Job identifiers and lease tokens.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of a job: a UUIDv7 made by the client, so ids sort by creation time.
///
/// Ids order as their bytes do (as [`Uuid`]s do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub Uuid);

impl Ord for JobId {
    /// The byte order, compared as one big-endian integer rather than byte by byte (the
    /// memory store's indexes compare ids for every job they move).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_u128().cmp(&other.0.as_u128())
    }
}

impl PartialOrd for JobId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl JobId {
    /// A new, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Uuid> for JobId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

/// The token of one claim of a job. Every outcome and heartbeat presents it, so a
/// worker whose lease was lost cannot touch a job that someone else now holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(pub Uuid);

impl LeaseToken {
    /// A new random token.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for LeaseToken {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A claimed job as its holder names it: the job id and the lease token of the claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The job.
    pub id: JobId,
    /// The token issued when the job was claimed.
    pub token: LeaseToken,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_as_their_bytes_do() {
        let mut ids: Vec<JobId> = (0..2_000)
            .map(|i| match i % 4 {
                // Random bytes, and ids that differ in one byte only, at either end.
                0 => JobId(Uuid::from_u128(rand::random())),
                1 => JobId(Uuid::from_bytes([(i % 256) as u8; 16])),
                2 => JobId(Uuid::from_u128(i as u128)),
                _ => JobId(Uuid::from_u128((i as u128) << 120)),
            })
            .collect();
        ids.push(JobId(Uuid::nil()));
        ids.push(JobId(Uuid::max()));
        for pair in ids.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert_eq!(a.cmp(&b), a.0.as_bytes().cmp(b.0.as_bytes()), "{a} against {b}");
            assert_eq!(a.partial_cmp(&b), Some(a.0.as_bytes().cmp(b.0.as_bytes())));
        }
        ids.sort();
        assert!(ids.windows(2).all(|pair| pair[0].0.as_bytes() <= pair[1].0.as_bytes()));
    }
}
