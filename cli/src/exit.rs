//! The exit codes scripts can rely on.

/// How a command ended, as the process's exit code (`haul --help` lists them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: it did what was asked.
    Success,
    /// 1: the operation or the storage failed.
    Failure,
    /// 2: bad usage (clap's own code for a bad command line).
    Usage,
    /// 3: a job named by its id does not exist.
    NotFound,
    /// 4: a job's state does not allow the action.
    InvalidState,
    /// 5: the confirmation prompt was declined; nothing was changed.
    Declined,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::NotFound => 3,
            Self::InvalidState => 4,
            Self::Declined => 5,
        }
    }

    /// The exit code of several outcomes (one per id of an action): success when all
    /// succeeded, otherwise the first of failure, not found, invalid state that occurred.
    pub fn combine(outcomes: impl IntoIterator<Item = Exit>) -> Exit {
        let outcomes: Vec<Exit> = outcomes.into_iter().collect();
        [Self::Failure, Self::NotFound, Self::InvalidState, Self::Usage, Self::Declined]
            .into_iter()
            .find(|exit| outcomes.contains(exit))
            .unwrap_or(Self::Success)
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storage_failure_outranks_a_missing_job_which_outranks_a_wrong_state() {
        assert_eq!(Exit::combine([]), Exit::Success);
        assert_eq!(Exit::combine([Exit::Success, Exit::InvalidState, Exit::NotFound]), Exit::NotFound);
        assert_eq!(Exit::combine([Exit::InvalidState, Exit::Failure, Exit::NotFound]), Exit::Failure);
        assert_eq!(Exit::combine([Exit::Success, Exit::InvalidState]), Exit::InvalidState);
    }
}
