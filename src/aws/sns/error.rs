//! SNS's error codes: the topic engine's errors and the API's own (batch
//! shapes, unknown actions) as SNS names them on the wire.

use http::StatusCode;

use crate::aws::error::AwsError;
use crate::aws::input::InputError;
use crate::notify::NotifyError;

/// Why an SNS call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("{0}")]
    EmptyBatchRequest(String),
    #[error("{0}")]
    TooManyEntriesInBatchRequest(String),
    #[error("{0}")]
    BatchEntryIdsNotDistinct(String),
    #[error("{0}")]
    InvalidBatchEntryId(String),
    #[error("{0}")]
    BatchRequestTooLong(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    InvalidAction(String),
}

impl From<InputError> for Error {
    fn from(e: InputError) -> Self {
        Error::Notify(NotifyError::InvalidParameter(match e {
            InputError::Missing(key) => format!("Invalid parameter: {key} is required"),
            InputError::Invalid(message) => format!("Invalid parameter: {message}"),
        }))
    }
}

impl Error {
    pub fn is_internal(&self) -> bool {
        matches!(self, Error::Notify(NotifyError::Internal(_)))
    }

    /// The error as SNS answers it.
    pub fn to_aws(&self) -> AwsError {
        let message = self.to_string();
        let (status, code) = match self {
            Error::Notify(NotifyError::Internal(_)) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            Error::Notify(NotifyError::NotFound(_)) => (StatusCode::NOT_FOUND, "NotFound"),
            Error::Notify(NotifyError::InvalidParameter(_)) => (StatusCode::BAD_REQUEST, "InvalidParameter"),
            Error::Notify(NotifyError::InvalidFifo(_)) => (StatusCode::BAD_REQUEST, "InvalidParameter"),
            Error::Notify(NotifyError::FilterPolicy(_)) => (StatusCode::BAD_REQUEST, "InvalidParameter"),
            Error::Notify(NotifyError::Authorization(_)) => (StatusCode::FORBIDDEN, "AuthorizationError"),
            Error::EmptyBatchRequest(_) => (StatusCode::BAD_REQUEST, "EmptyBatchRequest"),
            Error::TooManyEntriesInBatchRequest(_) => {
                (StatusCode::BAD_REQUEST, "TooManyEntriesInBatchRequest")
            }
            Error::BatchEntryIdsNotDistinct(_) => (StatusCode::BAD_REQUEST, "BatchEntryIdsNotDistinct"),
            Error::InvalidBatchEntryId(_) => (StatusCode::BAD_REQUEST, "InvalidBatchEntryId"),
            Error::BatchRequestTooLong(_) => (StatusCode::BAD_REQUEST, "BatchRequestTooLong"),
            Error::ResourceNotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFound"),
            Error::InvalidAction(_) => (StatusCode::BAD_REQUEST, "InvalidAction"),
        };
        AwsError::new(status, code, message)
    }
}
