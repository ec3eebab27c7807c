//! An AWS error as it goes on the wire, and how each protocol renders it.
//! Each service keeps its own map from its errors to these (`sqs::error`,
//! `sns::error`); protocol and authentication failures are built here.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use super::query::Xml;
use crate::body::GatewayBody;

/// Who is at fault, as AWS reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The request.
    Sender,
    /// The service: the request may be retried.
    Receiver,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Sender => "Sender",
            Fault::Receiver => "Receiver",
        }
    }
}

/// One error answer.
#[derive(Clone, Debug)]
pub struct AwsError {
    pub status: StatusCode,
    /// The Query protocol's code (also `x-amzn-query-error`).
    pub code: &'static str,
    /// The JSON protocol's shape name (`__type` is `<namespace>#<shape>`).
    pub shape: &'static str,
    pub fault: Fault,
    pub message: String,
}

impl AwsError {
    /// A 400 the request is at fault for, whose code and shape agree.
    pub fn sender(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let fault = if status.is_server_error() { Fault::Receiver } else { Fault::Sender };
        AwsError { status, code, shape: code, fault, message: message.into() }
    }

    /// The same error under another JSON shape name.
    pub fn shaped(mut self, shape: &'static str) -> Self {
        self.shape = shape;
        self
    }

    /// The service failed (storage, an internal invariant).
    pub fn internal(message: impl Into<String>) -> Self {
        AwsError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", message)
    }
}

/// Where a service's answers and errors are rendered from.
#[derive(Clone, Copy, Debug)]
pub struct Dialect {
    /// The JSON protocol's shape namespace (`com.amazonaws.sqs`).
    pub namespace: &'static str,
    /// The Query protocol's XML namespace.
    pub xmlns: &'static str,
}

/// The JSON protocol's error: `{"__type": …, "message": …}` and the
/// `x-amzn-query-error` header botocore and the JS SDK read the code from.
pub fn json_error(dialect: Dialect, e: &AwsError, request_id: &str) -> Response<GatewayBody> {
    let body = json!({ "__type": format!("{}#{}", dialect.namespace, e.shape), "message": e.message });
    let mut r = respond(e.status, "application/x-amz-json-1.0", super::json::to_string(&body), request_id);
    if let Ok(v) = HeaderValue::from_str(&format!("{};{}", e.code, e.fault.as_str())) {
        r.headers_mut().insert("x-amzn-query-error", v);
    }
    r
}

/// The Query protocol's `<ErrorResponse>` document.
pub fn xml_error(dialect: Dialect, e: &AwsError, request_id: &str) -> Response<GatewayBody> {
    let mut x = Xml::default();
    x.raw(&format!("<ErrorResponse xmlns=\"{}\">", dialect.xmlns));
    x.open("Error")
        .text("Type", e.fault.as_str())
        .text("Code", e.code)
        .text("Message", &e.message)
        .raw("<Detail/>")
        .close("Error");
    x.text("RequestId", request_id);
    x.raw("</ErrorResponse>");
    respond(e.status, "text/xml", x.finish(), request_id)
}

/// An answer with its `x-amzn-requestid`.
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    request_id: &str,
) -> Response<GatewayBody> {
    let mut r = Response::new(GatewayBody::full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", id);
    }
    r
}
