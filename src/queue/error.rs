//! Queue errors, one per SQS error the API can return. Each knows its
//! shape name (AWS JSON `__type`), its Query code and its HTTP status, so the
//! wire adapters share one map.

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
    TooManyEntriesInBatchRequest(String),
    #[error("{0}")]
    EmptyBatchRequest(String),
    #[error("{0}")]
    BatchEntryIdsNotDistinct(String),
    #[error("{0}")]
    BatchRequestTooLong(String),
    #[error("{0}")]
    InvalidBatchEntryId(String),
    #[error("{0}")]
    InvalidMessageContents(String),
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("{0}")]
    PurgeQueueInProgress(String),
    #[error("{0}")]
    MessageNotInflight(String),
    #[error("{0}")]
    OverLimit(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    InvalidAction(String),
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

    /// The AWS JSON shape name (`__type` is `com.amazonaws.sqs#` + this).
    pub fn shape(&self) -> &'static str {
        match self {
            QueueError::QueueDoesNotExist(_) => "QueueDoesNotExist",
            QueueError::QueueNameExists(_) => "QueueNameExists",
            QueueError::ReceiptHandleIsInvalid(_) => "ReceiptHandleIsInvalid",
            QueueError::InvalidParameterValue(_) => "InvalidParameterValue",
            QueueError::MissingParameter(_) => "MissingParameter",
            QueueError::InvalidAttributeName(_) => "InvalidAttributeName",
            QueueError::InvalidAttributeValue(_) => "InvalidAttributeValue",
            QueueError::TooManyEntriesInBatchRequest(_) => "TooManyEntriesInBatchRequest",
            QueueError::EmptyBatchRequest(_) => "EmptyBatchRequest",
            QueueError::BatchEntryIdsNotDistinct(_) => "BatchEntryIdsNotDistinct",
            QueueError::BatchRequestTooLong(_) => "BatchRequestTooLong",
            QueueError::InvalidBatchEntryId(_) => "InvalidBatchEntryId",
            QueueError::InvalidMessageContents(_) => "InvalidMessageContents",
            QueueError::UnsupportedOperation(_) => "UnsupportedOperation",
            QueueError::PurgeQueueInProgress(_) => "PurgeQueueInProgress",
            QueueError::MessageNotInflight(_) => "MessageNotInflight",
            QueueError::OverLimit(_) => "OverLimit",
            QueueError::ResourceNotFound(_) => "ResourceNotFoundException",
            QueueError::InvalidAction(_) => "InvalidAction",
            QueueError::Internal(_) => "InternalFailure",
        }
    }

    /// The Query protocol's error code (also sent in `x-amzn-query-error`).
    pub fn query_code(&self) -> &'static str {
        match self {
            QueueError::QueueDoesNotExist(_) => "AWS.SimpleQueueService.NonExistentQueue",
            QueueError::QueueNameExists(_) => "QueueAlreadyExists",
            QueueError::TooManyEntriesInBatchRequest(_) => {
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
            }
            QueueError::EmptyBatchRequest(_) => "AWS.SimpleQueueService.EmptyBatchRequest",
            QueueError::BatchEntryIdsNotDistinct(_) => "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            QueueError::BatchRequestTooLong(_) => "AWS.SimpleQueueService.BatchRequestTooLong",
            QueueError::InvalidBatchEntryId(_) => "AWS.SimpleQueueService.InvalidBatchEntryId",
            QueueError::UnsupportedOperation(_) => "AWS.SimpleQueueService.UnsupportedOperation",
            QueueError::PurgeQueueInProgress(_) => "AWS.SimpleQueueService.PurgeQueueInProgress",
            QueueError::MessageNotInflight(_) => "AWS.SimpleQueueService.MessageNotInflight",
            QueueError::Internal(_) => "InternalFailure",
            other => other.shape(),
        }
    }

    /// `Sender` (the request is at fault) or `Receiver` (the service is).
    pub fn fault(&self) -> &'static str {
        match self {
            QueueError::Internal(_) => "Receiver",
            _ => "Sender",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            QueueError::Internal(_) => 500,
            _ => 400,
        }
    }
}
