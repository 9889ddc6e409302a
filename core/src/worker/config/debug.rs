//! `Debug` for [`WorkerBuilder`]: the backend and the settings so far.

use std::fmt;

use super::WorkerBuilder;

impl fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("WorkerBuilder");
        debug.field("backend", &self.storage.backend_name());
        super::super::debug::settings(&mut debug, &self.config);
        debug.field("states", &self.states).finish_non_exhaustive()
    }
}
