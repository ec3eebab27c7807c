//! Checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that crosses its
//! threshold: the writer copies the whole WAL into the database file and
//! syncs it before that commit returns, and every reply waiting on the
//! transaction waits with it. Under load that was tens of milliseconds every
//! few seconds, the tail of SendMessage latency.
//!
//! Here a second connection, on its own thread, copies the WAL with
//! `PASSIVE` checkpoints, which never block the writer. A passive
//! checkpoint can only copy the frames committed when it starts, so by the
//! time it finishes the writer has appended more; the checkpointer repeats
//! until few frames are left and then hands back. The writer copies that
//! remainder itself between two transactions (a few pages and one sync), and
//! its next transaction starts the WAL over from the beginning, which keeps
//! the file from growing without bound.
//!
//! ```text
//! writer                                   checkpointer
//! COMMIT → wal hook: N frames ≥ start ──→  PASSIVE, PASSIVE, … (until ≤ TAIL left)
//!   …commits go on, WAL grows…             ──→ caught up
//! after a COMMIT: PASSIVE (≤ TAIL frames)
//! next transaction: WAL restarts at frame 1
//! ```
//!
//! If a pass leaves more frames than the one before (the writer appends
//! faster than the checkpointer copies), it hands back at once and the
//! writer copies the rest inline, as SQLite would have: the WAL stays
//! bounded whatever the disk.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rusqlite::wal::CheckpointMode;
use rusqlite::Connection;

use super::StorageError;

/// Frames left uncopied at which the background checkpointer hands back.
const TAIL: i32 = 64;
/// Background passes per request at most before handing back anyway.
const MAX_PASSES: u32 = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Idle,
    Requested,
    Running,
    /// The background passes are done; the writer copies the rest.
    CaughtUp,
    Stopping,
}

struct Shared {
    phase: Mutex<Phase>,
    wake: Condvar,
}

impl Shared {
    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writer's side: decides after each commit what the WAL needs.
pub struct Checkpointer {
    shared: Arc<Shared>,
    /// WAL frames after the last commit, set by the writer's WAL hook.
    frames: Arc<AtomicI32>,
    /// WAL frames at which a background checkpoint starts.
    start: i32,
    thread: Option<JoinHandle<()>>,
}

/// What the writer should do after a commit.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Copy the frames the background passes left with a passive
    /// checkpoint.
    Inline,
}

impl Checkpointer {
    /// Installs the WAL hook on the writer's connection (replacing SQLite's
    /// automatic checkpoint) and starts the background thread on a second
    /// connection to `file`, synced as `synchronous` says. Checkpoints start
    /// when the WAL holds `start` frames.
    pub fn start(
        writer: &mut Connection,
        file: &Path,
        synchronous: &str,
        start: i32,
    ) -> Result<Self, StorageError> {
        let frames = Arc::new(AtomicI32::new(0));
        let seen = frames.clone();
        writer
            .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
                seen.store(pages, Ordering::Relaxed);
                Ok(())
            }))
            .map_err(|e| StorageError::Failed(e.to_string()))?;
        let conn = Connection::open(file)
            .and_then(|c| {
                c.execute_batch(&format!("PRAGMA synchronous = {synchronous}; PRAGMA cache_size = -1024;"))?;
                Ok(c)
            })
            .map_err(|e| StorageError::Failed(format!("cannot open `{}`: {e}", file.display())))?;
        let shared = Arc::new(Shared { phase: Mutex::new(Phase::Idle), wake: Condvar::new() });
        let background = shared.clone();
        let thread = std::thread::Builder::new()
            .name("gatehouse-checkpoint".into())
            .spawn(move || run(conn, &background))
            .map_err(|e| StorageError::Failed(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Self { shared, frames, start, thread: Some(thread) })
    }

    /// Called after each commit (its replies already sent).
    pub fn after_commit(&self) -> Action {
        let frames = self.frames.load(Ordering::Relaxed);
        let mut phase = self.shared.phase();
        match *phase {
            Phase::CaughtUp => {
                *phase = Phase::Idle;
                Action::Inline
            }
            Phase::Idle if frames >= self.start => {
                *phase = Phase::Requested;
                self.shared.wake.notify_one();
                Action::Nothing
            }
            _ => Action::Nothing,
        }
    }

    /// Stops the background thread, finishing a pass under way.
    pub fn stop(&mut self) {
        *self.shared.phase() = Phase::Stopping;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(conn: Connection, shared: &Shared) {
    loop {
        {
            let mut phase = shared.phase();
            while *phase != Phase::Requested {
                if *phase == Phase::Stopping {
                    return;
                }
                phase = shared.wake.wait(phase).unwrap_or_else(|e| e.into_inner());
            }
            *phase = Phase::Running;
        }
        let mut left = i32::MAX;
        for _ in 0..MAX_PASSES {
            match conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
                // Progress, but more than a tail left: another pass.
                Ok((log, copied)) if log - copied > TAIL && log - copied < left => left = log - copied,
                Ok(_) => break,
                Err(e) => {
                    // The writer's inline pass (and SQLite's recovery) still
                    // bound the WAL; nothing is lost by skipping a pass.
                    tracing::warn!(error = %e, "background WAL checkpoint failed");
                    break;
                }
            }
            if *shared.phase() == Phase::Stopping {
                return;
            }
        }
        let mut phase = shared.phase();
        if *phase == Phase::Stopping {
            return;
        }
        *phase = Phase::CaughtUp;
    }
}
