//! What the queue engine refuses, one variant per SQS error its semantics
//! can produce. The wire codes each becomes live in `aws::sqs::error`.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("{0}")]
    QueueDoesNotExist(String),
    #[error("{0}")]
    QueueNameExists(String),
    #[error("{0}")]
    ReceiptHandleIsInvalid(String),
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    MissingParameter(String),
    #[error("{0}")]
    InvalidAttributeName(String),
    #[error("{0}")]
    InvalidAttributeValue(String),
    #[error("{0}")]
    InvalidMessageContents(String),
    #[error("{0}")]
    PurgeQueueInProgress(String),
    #[error("{0}")]
    MessageNotInflight(String),
    #[error("{0}")]
    OverLimit(String),
    #[error("{0}")]
    ResourceNotFound(String),
    /// The storage failed; the request may be retried.
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueueError {
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        QueueError::InvalidParameterValue(message.into())
    }

    pub fn no_queue() -> Self {
        QueueError::QueueDoesNotExist("The specified queue does not exist.".into())
    }
}
