//! The AWS-compatible API on `listen.aws`: decodes SQS requests in the AWS
//! JSON 1.0 protocol (`X-Amz-Target: AmazonSQS.<Action>`, what current SDKs
//! send) or the Query protocol (`Action=<Action>` in a form or query string,
//! XML answers, what older SDKs send), checks SigV4 signatures when
//! credentials are configured, runs the action on the queue engine and
//! encodes the answer — or the error, in the shape each protocol expects:
//!
//! - JSON: status 400, `{"__type":"com.amazonaws.sqs#<Shape>","message":…}`
//!   and `x-amzn-query-error: <QueryCode>;Sender`;
//! - Query: status 400 and an `<ErrorResponse>` document.

pub mod json;
pub mod query;
pub mod sigv4;
pub mod sqs;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Value};
use tower::Service;

use crate::body::{ClientBody, GatewayBody};
use crate::queue::storage::Storage;
use crate::queue::{QueueEngine, QueueError};
use crate::server::ConnInfo;
pub use sigv4::Credentials;

/// Largest request body accepted (ten 1 MiB messages, base64 overhead).
const MAX_REQUEST: usize = 16 << 20;

/// The AWS API service.
pub struct AwsService<S: Storage> {
    engine: Arc<QueueEngine<S>>,
    credentials: Option<Arc<Credentials>>,
    /// The connection's peer address: a message's `SenderId` when requests
    /// are not signed with configured credentials.
    peer: Option<Arc<str>>,
}

impl<S: Storage> Clone for AwsService<S> {
    fn clone(&self) -> Self {
        Self { engine: self.engine.clone(), credentials: self.credentials.clone(), peer: self.peer.clone() }
    }
}

impl<S: Storage> AwsService<S> {
    /// `credentials: None` accepts any signature (local development).
    pub fn new(engine: Arc<QueueEngine<S>>, credentials: Option<Credentials>) -> Self {
        Self { engine, credentials: credentials.map(Arc::new), peer: None }
    }

    /// This service for the requests of one connection.
    pub fn for_connection(&self, conn: &ConnInfo) -> Self {
        let peer = conn.peer_ip.to_str().ok().map(Arc::from);
        Self { peer, ..self.clone() }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Json,
    Query,
}

/// A failure before or outside an action: protocol and auth problems.
struct Failure {
    status: StatusCode,
    code: String,
    shape: String,
    fault: &'static str,
    message: String,
}

impl From<QueueError> for Failure {
    fn from(e: QueueError) -> Self {
        Failure {
            status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
            code: e.query_code().to_owned(),
            shape: e.shape().to_owned(),
            fault: e.fault(),
            message: e.to_string(),
        }
    }
}

impl Failure {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Failure { status, code: code.into(), shape: code.into(), fault: "Sender", message: message.into() }
    }
}

fn request_id() -> String {
    crate::queue::message::uuid_text(fastrand::u128(..))
}

fn respond(
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

fn render_failure(protocol: Protocol, f: &Failure, request_id: &str) -> Response<GatewayBody> {
    match protocol {
        Protocol::Json => {
            let body = json!({ "__type": format!("com.amazonaws.sqs#{}", f.shape), "message": f.message });
            let mut r = respond(f.status, "application/x-amz-json-1.0", json::to_string(&body), request_id);
            if let Ok(v) = HeaderValue::from_str(&format!("{};{}", f.code, f.fault)) {
                r.headers_mut().insert("x-amzn-query-error", v);
            }
            r
        }
        Protocol::Query => respond(
            f.status,
            "text/xml",
            sqs::error_xml(&f.code, f.fault, &f.message, request_id),
            request_id,
        ),
    }
}

impl<S: Storage> AwsService<S> {
    /// Answers one request: decode, check the signature, apply, encode.
    /// (The tower service for listeners; also what the fuzz target drives.)
    pub async fn answer<B>(self, req: Request<B>) -> Response<GatewayBody>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<crate::body::BoxError>,
    {
        let rid = request_id();
        let (parts, body) = req.into_parts();
        let protocol =
            if parts.headers.contains_key("x-amz-target") { Protocol::Json } else { Protocol::Query };
        let body = match Limited::new(body, MAX_REQUEST).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let too_big = e.is::<http_body_util::LengthLimitError>();
                if let Some(t) = crate::body::body_timeout_in(&*e) {
                    let f = Failure::new(StatusCode::REQUEST_TIMEOUT, "RequestTimeout", t.to_string());
                    let mut r = render_failure(protocol, &f, &rid);
                    if parts.version <= http::Version::HTTP_11 {
                        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    return r;
                }
                let f = if too_big {
                    Failure::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "RequestEntityTooLarge",
                        "The request body is too large.",
                    )
                } else {
                    Failure::new(
                        StatusCode::BAD_REQUEST,
                        "MalformedInput",
                        format!("The request body could not be read: {e}"),
                    )
                };
                return render_failure(protocol, &f, &rid);
            }
        };
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost")
            .to_owned();

        if let Some(creds) = &self.credentials {
            let signed = sigv4::Signed {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                query: parts.uri.query(),
                headers: &parts.headers,
                authority: parts.uri.authority().map(|a| a.as_str()),
                body: &body,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            if let Err(e) = sigv4::verify(&signed, creds, now) {
                let f = Failure::new(e.status(), e.code(), e.to_string());
                return render_failure(protocol, &f, &rid);
            }
        }
        let sender = match sigv4_access_key(&parts.headers) {
            Some(key) if self.credentials.is_some() => Some(key),
            _ => self.peer.as_deref().map(str::to_owned),
        };

        if protocol == Protocol::Json {
            let action = json_target(&parts.headers).and_then(|t| t.strip_prefix("AmazonSQS."));
            if let Some(action) = action {
                if let Some(result) = sqs::execute_typed(&self.engine, action, &body, &sender).await {
                    return answer(protocol, action, result, &rid);
                }
            }
        }
        let decoded = match protocol {
            Protocol::Json => decode_json(&parts.headers, &body),
            Protocol::Query => decode_query(parts.uri.path(), parts.uri.query(), &body),
        };
        let (action, input) = match decoded {
            Ok(x) => x,
            Err(f) => return render_failure(protocol, &f, &rid),
        };
        let call = sqs::Call { action: &action, input: &input, host: &host, sender };
        let result = sqs::execute(&self.engine, call).await;
        answer(protocol, &action, result, &rid)
    }
}

/// The HTTP answer to an action's result.
fn answer(
    protocol: Protocol,
    action: &str,
    result: Result<sqs::Output, QueueError>,
    rid: &str,
) -> Response<GatewayBody> {
    match result {
        Ok(output) => match protocol {
            Protocol::Json => respond(StatusCode::OK, "application/x-amz-json-1.0", output.to_json(), rid),
            Protocol::Query => {
                respond(StatusCode::OK, "text/xml", sqs::to_xml(action, &output.into_value(), rid), rid)
            }
        },
        Err(e) => {
            if matches!(e, QueueError::Internal(_)) {
                tracing::error!(action = %action, error = %e, "queue action failed");
            }
            render_failure(protocol, &Failure::from(e), rid)
        }
    }
}

/// The `X-Amz-Target` header of a JSON-protocol request.
fn json_target(headers: &http::HeaderMap) -> Option<&str> {
    headers.get("x-amz-target").and_then(|v| v.to_str().ok())
}

/// The access key named in a SigV4 `Authorization` header.
fn sigv4_access_key(headers: &http::HeaderMap) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?;
    Some(cred.split('/').next()?.to_owned())
}

fn decode_json(headers: &http::HeaderMap, body: &[u8]) -> Result<(String, Value), Failure> {
    let target = json_target(headers).unwrap_or("");
    let action = target.strip_prefix("AmazonSQS.").ok_or_else(|| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("Unknown operation {target}"),
        )
    })?;
    let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                format!("The request body is not valid JSON: {e}"),
            )
        })?
    };
    if !input.is_object() {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "The request body must be a JSON object.",
        ));
    }
    Ok((action.to_owned(), input))
}

fn decode_query(path: &str, query: Option<&str>, body: &[u8]) -> Result<(String, Value), Failure> {
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(q) = query {
        params.extend(query::parse_form(q.as_bytes()).map_err(Failure::from)?);
    }
    params.extend(query::parse_form(body).map_err(Failure::from)?);
    let action = params.iter().find(|(k, _)| k == "Action").map(|(_, v)| v.clone()).ok_or_else(|| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "MissingAction",
            "The request must contain the parameter Action.",
        )
    })?;
    // Signature and protocol parameters are not action input.
    let skip = [
        "Action",
        "Version",
        "AWSAccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "Timestamp",
        "Expires",
    ];
    let fields: Vec<(String, String)> =
        params.into_iter().filter(|(k, _)| !skip.contains(&k.as_str())).collect();
    let mut input = query::to_json(&fields);
    // Older SDKs post queue actions to the queue's URL instead of naming it.
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    if input.get("QueueUrl").is_none() && segments.len() == 2 {
        input["QueueUrl"] = Value::String(format!("/{}/{}", segments[0], segments[1]));
    }
    Ok((action, input))
}

impl<S: Storage> Service<Request<ClientBody>> for AwsService<S> {
    type Response = Response<GatewayBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ClientBody>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.answer(req).await) })
    }
}
