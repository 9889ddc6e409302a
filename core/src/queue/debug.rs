//! `Debug` for [`Enqueue`]: the queue it writes to and the job it prepared (or why it
//! could not).

use std::fmt;

use super::Enqueue;

impl fmt::Debug for Enqueue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enqueue").field("queue", self.queue).field("job", &self.job).finish_non_exhaustive()
    }
}
