//! What the topic engine refuses. The wire codes each becomes live in
//! `aws::sns::error`.

use crate::queue::QueueError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// No such topic or subscription.
    #[error("{0}")]
    NotFound(String),
    /// A parameter is missing or not valid.
    #[error("{0}")]
    InvalidParameter(String),
    /// A FIFO topic's limits (group or deduplication ids).
    #[error("{0}")]
    InvalidFifo(String),
    /// A subscription's filter policy is not valid.
    #[error("{0}")]
    FilterPolicy(String),
    /// The operation is not allowed for this caller or resource.
    #[error("{0}")]
    Authorization(String),
    /// The store or a queue failed; the request may be retried.
    #[error("internal error: {0}")]
    Internal(String),
}

impl NotifyError {
    pub fn invalid(message: impl Into<String>) -> Self {
        NotifyError::InvalidParameter(message.into())
    }

    pub fn no_topic() -> Self {
        NotifyError::NotFound("Topic does not exist".into())
    }
}

impl From<QueueError> for NotifyError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Internal(m) => NotifyError::Internal(m),
            other => NotifyError::InvalidParameter(other.to_string()),
        }
    }
}
