//! Data-plane workers: one thread per core, each running a single-threaded
//! tokio runtime that accepts its own connections (`SO_REUSEPORT`) and owns
//! its own upstream connections, so a request is served start to finish on
//! one core without crossing threads — the way nginx's workers do.
//!
//! This module only knows which worker the current thread is and keeps
//! per-worker slots ([`PerWorker`]); `app` starts the threads.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the data-plane worker running on this thread, if any.
pub fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// Marks the current thread as worker `index`.
pub fn enter(index: usize) {
    WORKER.with(|w| w.set(Some(index)));
}

/// One `T` per worker, plus one shared by every other thread (the control
/// plane: health checks, admin).
#[derive(Debug)]
pub struct PerWorker<T> {
    slots: Box<[T]>,
}

impl<T: Default> PerWorker<T> {
    pub fn new(workers: usize) -> Self {
        Self { slots: (0..=workers).map(|_| T::default()).collect() }
    }
}

impl<T> PerWorker<T> {
    /// This thread's slot.
    pub fn get(&self) -> &T {
        let last = self.slots.len() - 1;
        let i = current().map_or(last, |w| w.min(last));
        &self.slots[i]
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_thread_gets_its_own_slot() {
        let slots: PerWorker<std::sync::atomic::AtomicUsize> = PerWorker::new(2);
        slots.get().fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::thread::scope(|s| {
            for w in 0..2 {
                let slots = &slots;
                s.spawn(move || {
                    enter(w);
                    slots.get().fetch_add(10 * (w + 1), std::sync::atomic::Ordering::Relaxed);
                });
            }
        });
        let values: Vec<usize> = slots.iter().map(|a| a.load(std::sync::atomic::Ordering::Relaxed)).collect();
        assert_eq!(values, vec![10, 20, 1]);
    }
}
