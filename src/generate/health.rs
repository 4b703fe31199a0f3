//! The model thread's health, published to whoever listens (gRPC health and
//! `/ready` in the server) the moment it changes — as TEI's backend does on
//! a watch channel, without tying the library to an async runtime.

use std::sync::{Arc, Mutex, PoisonError};

type Listener = Box<dyn Fn(bool) + Send>;

/// Whether the model thread takes requests, and who is told when that changes.
#[derive(Default)]
pub struct ModelHealth {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    alive: bool,
    listeners: Vec<Listener>,
}

impl ModelHealth {
    pub fn is_alive(&self) -> bool {
        self.lock().alive
    }

    /// Calls `listener` with the current state now and with every change after.
    pub fn subscribe(&self, listener: impl Fn(bool) + Send + 'static) {
        let mut s = self.lock();
        listener(s.alive);
        s.listeners.push(Box::new(listener));
    }

    pub(super) fn set(&self, alive: bool) {
        let mut s = self.lock();
        if s.alive != alive {
            s.alive = alive;
            for l in &s.listeners {
                l(alive);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A listener that panicked leaves consistent state behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Held by the model thread: alive while it lives, dead when it ends —
/// normally or by a panic inside the runtime.
pub(super) struct AliveGuard(Arc<ModelHealth>);

impl AliveGuard {
    pub(super) fn new(health: Arc<ModelHealth>) -> Self {
        health.set(true);
        AliveGuard(health)
    }
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn listeners_see_the_current_state_then_each_change() {
        let health = Arc::new(ModelHealth::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        health.subscribe(move |a| s.lock().unwrap().push(a));
        let t = std::thread::spawn({
            let h = Arc::clone(&health);
            move || {
                let _alive = AliveGuard::new(h);
                panic!("the runtime crashed");
            }
        });
        assert!(t.join().is_err());
        assert!(!health.is_alive());
        assert_eq!(*seen.lock().unwrap(), vec![false, true, false]);
    }

    #[test]
    fn unchanged_state_is_not_repeated() {
        let health = ModelHealth::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&calls);
        health.subscribe(move |_| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        health.set(false);
        health.set(true);
        health.set(true);
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }
}
