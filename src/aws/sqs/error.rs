//! SQS's error codes: the queue engine's errors and the API's own (batch
//! shapes, unknown actions) as SQS names them on the wire.

use http::StatusCode;

use crate::aws::error::AwsError;
use crate::aws::input::InputError;
use crate::queue::QueueError;

/// Why an SQS call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Queue(#[from] QueueError),
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
    UnsupportedOperation(String),
    #[error("{0}")]
    InvalidAction(String),
}

impl From<InputError> for Error {
    fn from(e: InputError) -> Self {
        Error::Queue(match e {
            InputError::Missing(key) => {
                QueueError::MissingParameter(format!("The request must contain the parameter {key}."))
            }
            InputError::Invalid(message) => QueueError::InvalidParameterValue(message),
        })
    }
}

impl Error {
    pub fn is_internal(&self) -> bool {
        matches!(self, Error::Queue(QueueError::Internal(_)))
    }

    /// The error as SQS answers it.
    pub fn to_aws(&self) -> AwsError {
        let message = self.to_string();
        match self {
            Error::Queue(QueueError::Internal(_)) => AwsError::internal(message),
            Error::Queue(q) => {
                let (code, shape) = queue_code(q);
                AwsError::new(StatusCode::BAD_REQUEST, code, message).shaped(shape)
            }
            Error::TooManyEntriesInBatchRequest(_) => wire(
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
                "TooManyEntriesInBatchRequest",
                message,
            ),
            Error::EmptyBatchRequest(_) => {
                wire("AWS.SimpleQueueService.EmptyBatchRequest", "EmptyBatchRequest", message)
            }
            Error::BatchEntryIdsNotDistinct(_) => {
                wire("AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "BatchEntryIdsNotDistinct", message)
            }
            Error::BatchRequestTooLong(_) => {
                wire("AWS.SimpleQueueService.BatchRequestTooLong", "BatchRequestTooLong", message)
            }
            Error::InvalidBatchEntryId(_) => {
                wire("AWS.SimpleQueueService.InvalidBatchEntryId", "InvalidBatchEntryId", message)
            }
            Error::UnsupportedOperation(_) => {
                wire("AWS.SimpleQueueService.UnsupportedOperation", "UnsupportedOperation", message)
            }
            Error::InvalidAction(_) => AwsError::sender("InvalidAction", message),
        }
    }
}

fn wire(code: &'static str, shape: &'static str, message: String) -> AwsError {
    AwsError::sender(code, message).shaped(shape)
}

/// A queue engine error's Query code and JSON shape.
fn queue_code(e: &QueueError) -> (&'static str, &'static str) {
    match e {
        QueueError::QueueDoesNotExist(_) => ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"),
        QueueError::QueueNameExists(_) => ("QueueAlreadyExists", "QueueNameExists"),
        QueueError::ReceiptHandleIsInvalid(_) => ("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid"),
        QueueError::InvalidParameterValue(_) => ("InvalidParameterValue", "InvalidParameterValue"),
        QueueError::MissingParameter(_) => ("MissingParameter", "MissingParameter"),
        QueueError::InvalidAttributeName(_) => ("InvalidAttributeName", "InvalidAttributeName"),
        QueueError::InvalidAttributeValue(_) => ("InvalidAttributeValue", "InvalidAttributeValue"),
        QueueError::InvalidMessageContents(_) => ("InvalidMessageContents", "InvalidMessageContents"),
        QueueError::PurgeQueueInProgress(_) => {
            ("AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress")
        }
        QueueError::MessageNotInflight(_) => {
            ("AWS.SimpleQueueService.MessageNotInflight", "MessageNotInflight")
        }
        QueueError::OverLimit(_) => ("OverLimit", "OverLimit"),
        QueueError::ResourceNotFound(_) => ("ResourceNotFoundException", "ResourceNotFoundException"),
        QueueError::Internal(_) => ("InternalFailure", "InternalFailure"),
    }
}
