//! Exact connection balancing across the data-plane workers
//! (`connection_balance: exact`).
//!
//! Every worker accepts on its own `SO_REUSEPORT` socket, and the kernel
//! picks the socket by a hash of the connection's addresses. Over many
//! short connections that evens out; over a few long-lived ones it does not
//! (one 64-connection benchmark run split 41/24 across two workers; four
//! HTTP/2 clients all land on one worker one time in eight), and the worker
//! with more connections queues their requests longer.
//!
//! With balancing, a worker that accepts a connection while another worker
//! serves fewer hands it over: the socket leaves this worker's reactor and
//! joins the other's, as Envoy's `exact_balance` does. A handover costs a
//! few system calls and one cross-thread wake-up, once per connection;
//! requests on the connection pay nothing.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::{ConnectionSlot, ListenerStats};

/// An accepted connection on its way to another worker, already counted
/// against that worker and holding its place under the connection limit.
pub(super) struct Handoff {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub slot: ConnectionSlot,
}

/// Each worker's inbox of connections handed over to it, for one listener.
pub(super) struct Balancer {
    /// Held while choosing a worker and counting the connection against it,
    /// so two workers accepting at once do not both pick the same one.
    choosing: Mutex<()>,
    inboxes: Vec<mpsc::UnboundedSender<Handoff>>,
    receivers: Mutex<Vec<Option<mpsc::UnboundedReceiver<Handoff>>>>,
}

impl Balancer {
    /// A balancer for `workers` workers; `None` for fewer than two.
    pub fn new(workers: usize) -> Option<Arc<Self>> {
        if workers < 2 {
            return None;
        }
        let (inboxes, receivers) =
            (0..workers).map(|_| mpsc::unbounded_channel()).map(|(s, r)| (s, Some(r))).unzip();
        Some(Arc::new(Self { choosing: Mutex::new(()), inboxes, receivers: Mutex::new(receivers) }))
    }

    pub fn workers(&self) -> usize {
        self.inboxes.len()
    }

    /// Worker `worker`'s inbox; `None` if it was taken already.
    pub fn take_inbox(&self, worker: usize) -> Option<mpsc::UnboundedReceiver<Handoff>> {
        self.receivers.lock().unwrap_or_else(PoisonError::into_inner).get_mut(worker)?.take()
    }

    /// Counts a connection accepted by worker `me` against the worker that
    /// serves the fewest (`me` on a tie).
    pub fn assign(
        &self,
        stats: &Arc<ListenerStats>,
        permit: OwnedSemaphorePermit,
        me: usize,
    ) -> ConnectionSlot {
        let _choosing = self.choosing.lock().unwrap_or_else(PoisonError::into_inner);
        let open = |w: usize| stats.per_worker[w].load(Ordering::Relaxed);
        let mut worker = me;
        for w in 0..self.workers() {
            if open(w) < open(worker) {
                worker = w;
            }
        }
        ConnectionSlot::new(permit, stats.clone(), worker)
    }

    /// Hands `handoff` to the worker its slot is counted against. Gives it
    /// back if that worker takes no more connections (it is stopping).
    pub fn send(&self, handoff: Handoff) -> Result<(), Handoff> {
        self.inboxes[handoff.slot.worker].send(handoff).map_err(|e| e.0)
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::Semaphore;

    use super::*;

    fn counts(stats: &ListenerStats) -> Vec<usize> {
        stats.per_worker.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }

    fn permit() -> OwnedSemaphorePermit {
        Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap()
    }

    #[test]
    fn one_worker_needs_no_balancer() {
        assert!(Balancer::new(1).is_none());
        assert!(Balancer::new(0).is_none());
    }

    #[test]
    fn connections_go_to_the_least_loaded_worker_and_are_uncounted_on_close() {
        let b = Balancer::new(3).unwrap();
        let stats = Arc::new(ListenerStats::new(3));
        // All accepted by worker 0: they go to 0, 1, 2, then 0 again (a tie
        // keeps the connection where it was accepted).
        let slots: Vec<ConnectionSlot> = (0..4).map(|_| b.assign(&stats, permit(), 0)).collect();
        assert_eq!(slots.iter().map(|s| s.worker).collect::<Vec<_>>(), vec![0, 1, 2, 0]);
        assert_eq!(counts(&stats), vec![2, 1, 1, 0]);
        assert_eq!(stats.active(), 4);
        // Worker 2 accepting keeps its own on a tie with worker 1.
        let kept = b.assign(&stats, permit(), 2);
        assert_eq!(kept.worker, 2);
        drop(slots);
        assert_eq!(counts(&stats), vec![0, 0, 1, 0]);
        drop(kept);
        assert_eq!(counts(&stats), vec![0, 0, 0, 0]);
        assert_eq!(stats.active(), 0);
    }

    #[test]
    fn a_stopping_worker_gives_the_connection_back() {
        let b = Balancer::new(2).unwrap();
        let stats = Arc::new(ListenerStats::new(2));
        let inbox = b.take_inbox(0).unwrap();
        assert!(b.take_inbox(0).is_none(), "an inbox is taken once");
        drop(inbox);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, peer) = listener.accept().unwrap();
        let _first = b.assign(&stats, permit(), 1);
        let slot = b.assign(&stats, permit(), 1);
        assert_eq!(slot.worker, 0);
        let back = b.send(Handoff { stream, peer, slot });
        assert_eq!(back.err().map(|h| h.slot.worker), Some(0));
    }
}
