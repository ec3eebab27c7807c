//! Publishing through the gateway: a route with `queue:` (or `topic:`)
//! turns each request into a message.
//!
//! - the body becomes the message body (it must be text SQS accepts, and no
//!   larger than the queue's maximum message size, or a topic's 256 KiB:
//!   413 otherwise);
//! - `message.group_id`, `message.dedup_id`, `message.subject` (topics) and
//!   `message.attributes` take their values from request headers or from
//!   the claims of the token the route's auth layer verified (`jwt:CLAIM`);
//!   on a FIFO queue or topic the `Idempotency-Key` header is the
//!   deduplication id unless another source is configured;
//! - the request's `Content-Type` is kept as the `Content-Type` attribute;
//! - the answer is `200` with `{"MessageId": …}` (and `"SequenceNumber"` on
//!   FIFO queues and topics), once the message is durable (for a topic: in
//!   every subscribed queue).

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower::Service;

use crate::body::GatewayBody;
use crate::config::{MessageMapping, ValueSource};
use crate::error::{BoxHttpError, HttpError};
use crate::exchange::{claim_text, Claims, Exchange};
use crate::notify::NotifyError;
use crate::queue::message::{AttributeValue, Attributes};
use crate::queue::storage::Storage;
use crate::queue::{QueueEngine, QueueError, SendRequest};

/// Publishes requests into one queue.
pub struct Publisher<S: Storage> {
    pub engine: Arc<QueueEngine<S>>,
    pub queue: String,
    pub mapping: MessageMapping,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the message is larger than {target} accepts ({limit} bytes)")]
    TooLarge { target: String, limit: u64 },
    #[error("the request body could not be read: {0}")]
    Body(String),
    #[error("{0}")]
    BodyTimeout(crate::body::BodyTimeout),
    #[error("the request body must be UTF-8 text to become a message")]
    NotText,
    #[error("{0}")]
    Queue(QueueError),
    #[error("{0}")]
    Topic(NotifyError),
}

impl HttpError for PublishError {
    fn status(&self) -> StatusCode {
        match self {
            PublishError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PublishError::Body(_) | PublishError::NotText => StatusCode::BAD_REQUEST,
            PublishError::BodyTimeout(t) => t.status(),
            PublishError::Queue(QueueError::Internal(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            PublishError::Queue(QueueError::QueueDoesNotExist(_)) => StatusCode::SERVICE_UNAVAILABLE,
            PublishError::Queue(_) => StatusCode::BAD_REQUEST,
            PublishError::Topic(NotifyError::Internal(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            PublishError::Topic(NotifyError::NotFound(_)) => StatusCode::SERVICE_UNAVAILABLE,
            PublishError::Topic(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            PublishError::TooLarge { .. } => "payload_too_large",
            PublishError::Body(_) => "bad_request_body",
            PublishError::BodyTimeout(t) => t.code(),
            PublishError::NotText => "invalid_message_contents",
            PublishError::Queue(QueueError::QueueDoesNotExist(_)) => "queue_unavailable",
            PublishError::Queue(QueueError::Internal(_)) => "internal_error",
            PublishError::Queue(QueueError::MissingParameter(_)) => "missing_message_field",
            PublishError::Queue(QueueError::InvalidMessageContents(_)) => "invalid_message_contents",
            PublishError::Queue(_) => "invalid_message",
            PublishError::Topic(NotifyError::NotFound(_)) => "topic_unavailable",
            PublishError::Topic(NotifyError::Internal(_)) => "internal_error",
            PublishError::Topic(NotifyError::InvalidFifo(_)) => "missing_message_field",
            PublishError::Topic(_) => "invalid_message",
        }
    }

    fn closes_connection(&self) -> bool {
        matches!(self, PublishError::BodyTimeout(_))
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn source(headers: &HeaderMap, claims: Option<&Claims>, src: &ValueSource) -> Option<String> {
    match src {
        ValueSource::Header(name) => header_text(headers, name),
        ValueSource::Jwt(claim) => claim_text(claims?, claim),
    }
}

impl<S: Storage> Publisher<S> {
    /// Turns the exchange's request into a message; the client's address
    /// becomes its `SenderId`.
    pub async fn publish(&self, ex: Exchange) -> Result<Response<GatewayBody>, PublishError> {
        let q = self.engine.queue(&self.queue).map_err(PublishError::Queue)?;
        let attrs = q.attributes();
        let target = format!("queue `{}`", self.queue);
        let sender = ex.conn.peer_ip.to_str().ok().map(str::to_owned);
        let claims = ex.claims;
        let (parts, body) = read_text(ex.request, u64::from(attrs.max_message_size), target).await?;
        let fields = Fields::of(&self.mapping, &parts.headers, claims.as_deref(), attrs.fifo);
        let request = SendRequest {
            body,
            sender,
            attributes: fields.attributes,
            group_id: fields.group_id,
            dedup_id: fields.dedup_id,
            ..Default::default()
        };
        let result = self
            .engine
            .send(&q, vec![request])
            .await
            .map_err(PublishError::Queue)?
            .pop()
            .ok_or_else(|| PublishError::Queue(QueueError::Internal("no result".into())))?
            .map_err(PublishError::Queue)?;
        Ok(published(&result.message_id, result.sequence_number.as_deref()))
    }
}

/// The request's body as text, within `limit` bytes (413 beyond), and the
/// rest of the request.
pub(super) async fn read_text(
    req: http::Request<crate::body::ClientBody>,
    limit: u64,
    target: String,
) -> Result<(http::request::Parts, String), PublishError> {
    let too_large = || PublishError::TooLarge { target: target.clone(), limit };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, limit as usize).collect().await.map_err(|e| {
        if e.is::<LengthLimitError>() {
            too_large()
        } else if let Some(t) = crate::body::body_timeout_in(&*e) {
            PublishError::BodyTimeout(t)
        } else {
            PublishError::Body(e.to_string())
        }
    })?;
    let body = String::from_utf8(body.to_bytes().to_vec()).map_err(|_| PublishError::NotText)?;
    Ok((parts, body))
}

/// A message's fields as a route's `message:` mapping takes them from the
/// request.
pub(super) struct Fields {
    pub attributes: Attributes,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub subject: Option<String>,
}

impl Fields {
    /// `fifo`: the `Idempotency-Key` header is the deduplication id unless
    /// the mapping names another source.
    pub fn of(mapping: &MessageMapping, headers: &HeaderMap, claims: Option<&Claims>, fifo: bool) -> Fields {
        let mut attributes = Attributes::new();
        for (name, src) in &mapping.attributes {
            if let Some(v) = source(headers, claims, src) {
                attributes.insert(name.clone(), string_attribute(v));
            }
        }
        if let Some(ct) = header_text(headers, header::CONTENT_TYPE.as_str()) {
            attributes.insert("Content-Type".into(), string_attribute(ct));
        }
        let dedup_id = match &mapping.dedup_id {
            Some(s) => source(headers, claims, s),
            None if fifo => header_text(headers, "idempotency-key"),
            None => None,
        };
        Fields {
            attributes,
            group_id: mapping.group_id.as_ref().and_then(|s| source(headers, claims, s)),
            dedup_id,
            subject: mapping.subject.as_ref().and_then(|s| source(headers, claims, s)),
        }
    }
}

/// `200 {"MessageId": …[, "SequenceNumber": …]}`.
pub(super) fn published(message_id: &str, sequence_number: Option<&str>) -> Response<GatewayBody> {
    let mut body = serde_json::json!({ "MessageId": message_id });
    if let Some(seq) = sequence_number {
        body["SequenceNumber"] = serde_json::Value::String(seq.to_owned());
    }
    let mut resp = Response::new(GatewayBody::full(Bytes::from(format!("{body}\n"))));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn string_attribute(v: String) -> AttributeValue {
    AttributeValue { data_type: "String".into(), string_value: Some(v), binary_value: None }
}

/// Where a publishing route's messages go.
pub enum Destination<S: Storage> {
    Queue(Publisher<S>),
    Topic(super::topic::TopicPublisher<S>),
}

/// The target of `queue:` and `topic:` routes. `None` only in plans built
/// to check a config, where nothing is served.
pub struct PublishTarget<S: Storage>(pub Option<Arc<Destination<S>>>);

impl<S: Storage> Clone for PublishTarget<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// A publish route whose queue engine is missing is a wiring bug, reported
/// as a 500 rather than a panic.
#[derive(Debug, thiserror::Error)]
#[error("internal error: the route's queue or topic is not available")]
struct Unwired;

impl HttpError for Unwired {
    fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
    fn code(&self) -> &'static str {
        "internal_error"
    }
}

impl<S: Storage> Service<Exchange> for PublishTarget<S> {
    type Response = Response<GatewayBody>;
    type Error = BoxHttpError;
    type Future = super::RouteFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxHttpError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, ex: Exchange) -> Self::Future {
        let publisher = self.0.clone();
        Box::pin(async move {
            let result = match publisher.as_deref() {
                None => return Err(Unwired.into()),
                Some(Destination::Queue(q)) => q.publish(ex).await,
                Some(Destination::Topic(t)) => t.publish(ex).await,
            };
            result.map_err(Into::into)
        })
    }
}
