//! A bounded map whose entries hold for one generation of the module source:
//! the runner's caches of keys, resolutions and listings.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;

/// Entries valid while the source's generation stays the same; emptied when
/// it moves, and when full (a tenant can ask for any number of names).
pub(crate) struct Generational<K, V> {
    state: Mutex<State<K, V>>,
    max: usize,
}

struct State<K, V> {
    generation: u64,
    entries: HashMap<K, V>,
}

impl<K: Eq + Hash, V: Clone> Generational<K, V> {
    /// An empty map of at most `max` entries.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            state: Mutex::new(State {
                generation: 0,
                entries: HashMap::new(),
            }),
            max,
        }
    }

    /// The value of `key` at `generation`, computing it with `compute` when
    /// absent. A value computed while the generation moved is returned but
    /// not kept (it may be stale).
    ///
    /// # Errors
    /// `compute`'s.
    pub(crate) async fn get_or_try<E>(
        &self,
        generation: u64,
        key: K,
        compute: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E> {
        {
            let mut state = self.state.lock().expect("generational cache lock");
            if state.generation != generation {
                state.entries.clear();
                state.generation = generation;
            }
            if let Some(v) = state.entries.get(&key) {
                return Ok(v.clone());
            }
        }
        let value = compute.await?;
        let mut state = self.state.lock().expect("generational cache lock");
        if state.generation == generation {
            if state.entries.len() >= self.max {
                state.entries.clear();
            }
            state.entries.insert(key, value.clone());
        }
        Ok(value)
    }

    /// A value satisfying `pred`, if one is cached (any generation's: the
    /// caller decides whether an older one will do).
    pub(crate) fn find(&self, pred: impl Fn(&V) -> bool) -> Option<V> {
        let state = self.state.lock().expect("generational cache lock");
        state.entries.values().find(|v| pred(v)).cloned()
    }
}
