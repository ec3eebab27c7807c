//! Message move tasks (`StartMessageMoveTask`): moving messages out of a
//! dead-letter queue, back to the queues they came from or to a chosen
//! destination, at an optional rate.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use super::storage::QueueId;
use super::{now_ms, Queue, QueueError};

/// What `ListMessageMoveTasks` reports of one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveTaskInfo {
    /// Present while the task runs (it is what cancels it).
    pub handle: Option<String>,
    /// `RUNNING`, `COMPLETED`, `CANCELLING`, `CANCELLED` or `FAILED`.
    pub status: &'static str,
    pub source_arn: String,
    pub destination_arn: Option<String>,
    pub max_per_second: Option<u32>,
    pub moved: u64,
    pub to_move: u64,
    pub failure_reason: Option<String>,
    pub started_ms: i64,
}

struct Task {
    handle: String,
    source_arn: String,
    destination_arn: Option<String>,
    per_second: Option<u32>,
    to_move: u64,
    moved: AtomicU64,
    status: Mutex<&'static str>,
    failure: Mutex<Option<String>>,
    cancel: AtomicBool,
    started_ms: i64,
}

impl Task {
    fn info(&self) -> MoveTaskInfo {
        let status = *self.status.lock().unwrap_or_else(|e| e.into_inner());
        MoveTaskInfo {
            handle: matches!(status, "RUNNING" | "CANCELLING").then(|| self.handle.clone()),
            status,
            source_arn: self.source_arn.clone(),
            destination_arn: self.destination_arn.clone(),
            max_per_second: self.per_second,
            moved: self.moved.load(Ordering::Relaxed),
            to_move: self.to_move,
            failure_reason: self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            started_ms: self.started_ms,
        }
    }

    fn set(&self, status: &'static str) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }
}

/// Every move task of an engine, most recent last.
#[derive(Default)]
pub(crate) struct MoveTasks {
    tasks: Mutex<Vec<Arc<Task>>>,
}

impl MoveTasks {
    /// Starts a task; `mover(from, to, limit)` moves up to `limit` messages
    /// and says how many it moved.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start<F, Fut>(
        &self,
        source_arn: String,
        source: Arc<Queue>,
        destination: Option<Arc<Queue>>,
        destination_arn: Option<String>,
        per_second: Option<u32>,
        to_move: u64,
        mover: F,
    ) -> Result<String, QueueError>
    where
        F: Fn(QueueId, Option<QueueId>, usize) -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, QueueError>> + Send,
    {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if tasks
            .iter()
            .any(|t| t.source_arn == source_arn && matches!(t.info().status, "RUNNING" | "CANCELLING"))
        {
            return Err(QueueError::invalid_parameter(format!(
                "There is already a message move task running for {source_arn}."
            )));
        }
        let id = format!("{:032x}", fastrand::u128(..));
        let handle = base64::engine::general_purpose::STANDARD
            .encode(serde_json::json!({ "taskId": id, "sourceArn": source_arn }).to_string());
        let task = Arc::new(Task {
            handle: handle.clone(),
            source_arn,
            destination_arn,
            per_second,
            to_move,
            moved: AtomicU64::new(0),
            status: Mutex::new("RUNNING"),
            failure: Mutex::new(None),
            cancel: AtomicBool::new(false),
            started_ms: now_ms(),
        });
        tasks.push(task.clone());
        let (from, to) = (source.id, destination.as_ref().map(|d| d.id));
        tokio::spawn(async move {
            // Without a rate, move in chunks as fast as the store allows.
            let chunk = per_second.map_or(500, |p| p as usize);
            loop {
                if task.cancel.load(Ordering::Relaxed) {
                    task.set("CANCELLED");
                    return;
                }
                match mover(from, to, chunk).await {
                    Err(e) => {
                        *task.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                        task.set("FAILED");
                        return;
                    }
                    Ok(0) => {
                        task.set("COMPLETED");
                        return;
                    }
                    Ok(n) => {
                        task.moved.fetch_add(n, Ordering::Relaxed);
                    }
                }
                if per_second.is_some() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
        });
        Ok(handle)
    }

    pub(crate) fn list(&self, source_arn: &str, max: usize) -> Vec<MoveTaskInfo> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.iter().rev().filter(|t| t.source_arn == source_arn).take(max).map(|t| t.info()).collect()
    }

    pub(crate) fn cancel(&self, handle: &str) -> Result<u64, QueueError> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let task =
            tasks.iter().find(|t| t.handle == handle && t.info().status == "RUNNING").ok_or_else(|| {
                QueueError::ResourceNotFound("The task handle does not name a running task.".into())
            })?;
        task.cancel.store(true, Ordering::Relaxed);
        task.set("CANCELLING");
        Ok(task.moved.load(Ordering::Relaxed))
    }
}
