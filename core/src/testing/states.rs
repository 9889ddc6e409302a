//! The application state a [`TestJobs`](super::TestJobs) gives the jobs it runs.

use std::sync::{Arc, Mutex, PoisonError};

use crate::StateMap;

/// Adds one value to a map.
type Insert = Box<dyn Fn(&mut StateMap) + Send + Sync>;

/// State values that can be added at any time, even while a job holds the current map.
///
/// A [`StateMap`] cannot be copied, so every value is kept shared with the closure that
/// inserts it, and each addition builds a new map from all of them; a job that is
/// running keeps the map it started with.
#[derive(Default)]
pub(super) struct TestStates {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    inserts: Vec<Insert>,
    map: Arc<StateMap>,
}

impl TestStates {
    /// Adds `value` (replacing an earlier value of the same type).
    pub(super) fn add<T: Send + Sync + 'static>(&self, value: Arc<T>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.inserts.push(Box::new(move |map| map.insert_shared(Arc::clone(&value))));
        let mut map = StateMap::new();
        for insert in &inner.inserts {
            insert(&mut map);
        }
        inner.map = Arc::new(map);
    }

    /// The map jobs run with now.
    pub(super) fn current(&self) -> Arc<StateMap> {
        Arc::clone(&self.inner.lock().unwrap_or_else(PoisonError::into_inner).map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_added_later_join_the_map_and_replace_their_type() {
        let states = TestStates::default();
        states.add(Arc::new(1_u32));
        let before = states.current();
        states.add(Arc::new("mailer"));
        states.add(Arc::new(2_u32));
        let now = states.current();
        assert_eq!(now.get::<u32>().map(|value| *value), Some(2));
        assert_eq!(now.get::<&str>().map(|value| *value), Some("mailer"));
        assert_eq!(before.get::<u32>().map(|value| *value), Some(1));
        assert!(before.get::<&str>().is_none());
    }
}
