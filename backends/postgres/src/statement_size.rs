//! How many bytes of parameters one statement of a batch sends, and the split of a
//! batch into statements that each send at most that.
//!
//! sqlx 0.9.0 leaves Nagle's algorithm on for its TCP connections (sqlx issue #4335;
//! 0.8 turned it off). A request larger than what the client socket takes at once (16
//! KiB, Linux's default `tcp_wmem`) then leaves in two parts, and the second waits for
//! the server's delayed acknowledgement of the first: about 40 ms on Linux, added to a
//! statement the server runs in a few. Measured with the bench's drain on one machine
//! (loopback): a report of 250 outcomes (15 KB of parameters) took 7 ms in the worker,
//! one of 300 outcomes (18 KB) 51 ms, one of 1,000 (61 KB) 62 ms against 19 ms on the
//! server.
//!
//! So a batch whose parameters would pass [`STATEMENT_BYTES`] is sent as several
//! statements, each under it (an item larger than that alone goes in a statement of its
//! own): in one transaction ([`Statements`]) when the batch is applied whole or not at
//! all (reports, enqueues), on their own when each item stands alone (heartbeats).

use haul_core::Result;
use sqlx::{Connection, PgConnection, Postgres, Transaction};

use crate::error::map_sqlx_error;

/// The most parameter bytes one statement of a batch carries: 12 KiB, under the 16 KiB
/// a socket takes at once with room for the statement's own framing.
pub(crate) const STATEMENT_BYTES: usize = 12 * 1024;

/// `items` cut, in order, into runs whose `size`s add up to at most [`STATEMENT_BYTES`]
/// (an item larger than that is a run of its own).
pub(crate) fn split<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, item) in items.iter().enumerate() {
        let item_bytes = size(item);
        if index > start && bytes + item_bytes > STATEMENT_BYTES {
            runs.push(&items[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += item_bytes;
    }
    if start < items.len() {
        runs.push(&items[start..]);
    }
    runs
}

/// Where the statements of one batch go: straight to the connection when there is one,
/// in a transaction when there are several (a savepoint when the connection is in a
/// transaction already), so that the batch is applied whole or not at all. Without
/// [`Statements::commit`], several statements are rolled back.
#[must_use = "several statements are rolled back unless committed"]
pub(crate) enum Statements<'c> {
    /// One statement, on its own.
    One(&'c mut PgConnection),
    /// Several statements, in one transaction.
    Several(Transaction<'c, Postgres>),
}

impl<'c> Statements<'c> {
    /// Begins a transaction on `conn` if the batch has more than one statement.
    pub(crate) async fn begin(conn: &'c mut PgConnection, statements: usize) -> Result<Self> {
        if statements <= 1 {
            return Ok(Self::One(conn));
        }
        Ok(Self::Several(Connection::begin(conn).await.map_err(map_sqlx_error)?))
    }

    /// The connection to send the next statement on.
    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        match self {
            Self::One(conn) => conn,
            Self::Several(tx) => tx,
        }
    }

    /// Commits the transaction, if there is one.
    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            Self::One(_) => Ok(()),
            Self::Several(tx) => tx.commit().await.map_err(map_sqlx_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_stay_under_the_limit_and_keep_the_order() {
        let sizes = [5_000, 5_000, 5_000, 20_000, 1, STATEMENT_BYTES - 1];
        let runs = split(&sizes, |size| *size);
        assert_eq!(runs, [&[5_000, 5_000][..], &[5_000], &[20_000], &[1, STATEMENT_BYTES - 1]]);
    }

    #[test]
    fn a_small_batch_is_one_run_and_an_empty_one_none() {
        assert_eq!(split(&[1, 2, 3], |size| *size), [&[1, 2, 3][..]]);
        assert!(split(&[] as &[usize], |size| *size).is_empty());
    }

    #[test]
    fn a_run_holds_exactly_the_limit() {
        let half = STATEMENT_BYTES / 2;
        assert_eq!(split(&[half, half, 1], |size| *size), [&[half, half][..], &[1]]);
    }
}
