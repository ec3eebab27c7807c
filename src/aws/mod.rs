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

pub mod error;
pub mod input;
pub mod json;
pub mod query;
pub mod sigv4;
pub mod sns;
pub mod sqs;
pub mod sts;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use tower::Service;

use crate::body::{ClientBody, GatewayBody};
use crate::notify::Notifier;
use crate::queue::storage::Storage;
use crate::queue::{QueueEngine, QueueError};
use crate::server::ConnInfo;
use error::{respond, AwsError, Dialect};
pub use sigv4::Credentials;

/// Largest request body accepted (ten 1 MiB messages, base64 overhead).
const MAX_REQUEST: usize = 16 << 20;

/// The AWS API service.
pub struct AwsService<S: Storage> {
    engine: Arc<QueueEngine<S>>,
    notifier: Option<Arc<Notifier<S>>>,
    credentials: Option<Arc<Credentials>>,
    /// The connection's peer address: a message's `SenderId` when requests
    /// are not signed with configured credentials.
    peer: Option<Arc<str>>,
}

impl<S: Storage> Clone for AwsService<S> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            notifier: self.notifier.clone(),
            credentials: self.credentials.clone(),
            peer: self.peer.clone(),
        }
    }
}

impl<S: Storage> AwsService<S> {
    /// `credentials: None` accepts any signature (local development).
    /// Without a notifier, SNS calls are refused.
    pub fn new(
        engine: Arc<QueueEngine<S>>,
        notifier: Option<Arc<Notifier<S>>>,
        credentials: Option<Credentials>,
    ) -> Self {
        Self { engine, notifier, credentials: credentials.map(Arc::new), peer: None }
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

fn request_id() -> String {
    crate::queue::message::uuid_text(fastrand::u128(..))
}

/// What every action of a request needs besides its input.
struct Call<'a> {
    protocol: Protocol,
    request_id: &'a str,
    /// The `Host` the client used, for queue URLs.
    host: &'a str,
    sender: Option<String>,
    /// The access key that signed the request, if one did.
    access_key: Option<String>,
}

impl Call<'_> {
    fn fail(&self, dialect: Dialect, e: &AwsError) -> Response<GatewayBody> {
        match self.protocol {
            Protocol::Json => error::json_error(dialect, e, self.request_id),
            Protocol::Query => error::xml_error(dialect, e, self.request_id),
        }
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
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost")
            .to_owned();
        if parts.method == http::Method::GET
            && parts.uri.path() == format!("/{}", crate::notify::signing_cert_path())
        {
            if let Some(n) = &self.notifier {
                let pem = n.signer().certificate_pem().to_owned();
                return respond(StatusCode::OK, "application/x-pem-file", pem, &rid);
            }
        }
        let mut cx = Call { protocol, request_id: &rid, host: &host, sender: None, access_key: None };
        let body = match read_body(body).await {
            Ok(body) => body,
            Err(e) => {
                let mut r = cx.fail(sqs::DIALECT, &e);
                // A client too slow to send its body does not keep the connection.
                if e.status == StatusCode::REQUEST_TIMEOUT && parts.version <= http::Version::HTTP_11 {
                    r.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
                }
                return r;
            }
        };
        let signed = self.authenticate(&parts, &body);
        if let Ok(key) = &signed {
            cx.access_key = key.clone();
            // A message's sender: the verified access key, else the peer.
            cx.sender = key.clone().or_else(|| self.peer.as_deref().map(str::to_owned));
        }
        match protocol {
            Protocol::Json => match signed {
                Ok(_) => self.json_call(&parts.headers, &body, cx).await,
                Err(e) => cx.fail(sqs::DIALECT, &e),
            },
            Protocol::Query => self.query_call(&parts.uri, &body, signed.map(drop), cx).await,
        }
    }

    /// Checks the request's SigV4 signature when credentials are
    /// configured: the access key that signed it.
    fn authenticate(&self, parts: &http::request::Parts, body: &[u8]) -> Result<Option<String>, AwsError> {
        let Some(creds) = &self.credentials else { return Ok(None) };
        let signed = sigv4::Signed {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            authority: parts.uri.authority().map(|a| a.as_str()),
            body,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        sigv4::verify(&signed, creds, now)
            .map(Some)
            .map_err(|e| AwsError::new(e.status(), e.code(), e.to_string()))
    }

    /// A JSON-protocol request: the service and action are in `X-Amz-Target`.
    async fn json_call(&self, headers: &http::HeaderMap, body: &[u8], cx: Call<'_>) -> Response<GatewayBody> {
        let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
        if let Some(action) = target.strip_prefix(sts::JSON_PREFIX) {
            return self.sts(action, cx);
        }
        let Some(action) = target.strip_prefix("AmazonSQS.") else {
            let e = AwsError::sender("UnknownOperationException", format!("Unknown operation {target}"));
            return cx.fail(sqs::DIALECT, &e);
        };
        let op = match sqs::op::Op::parse_json(action, body) {
            Ok(op) => op,
            Err(sqs::op::ParseFailure::Serialization(m)) => {
                return cx.fail(sqs::DIALECT, &AwsError::sender("SerializationException", m))
            }
            Err(sqs::op::ParseFailure::Op(e)) => return cx.fail(sqs::DIALECT, &e.to_aws()),
        };
        self.sqs(op, cx).await
    }

    /// A Query-protocol request: `Action` and `Version` name the action and
    /// the service. `signed` is the signature check's outcome: SNS lets a
    /// subscriber confirm or unsubscribe with an unsigned request.
    async fn query_call(
        &self,
        uri: &http::Uri,
        body: &[u8],
        signed: Result<(), AwsError>,
        cx: Call<'_>,
    ) -> Response<GatewayBody> {
        let mut params = Vec::new();
        let mut problem = None;
        for text in [uri.query().unwrap_or("").as_bytes(), body] {
            let (pairs, p) = query::parse_form(text);
            params.extend(pairs);
            problem = problem.or(p);
        }
        let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let (action, version) = (param("Action"), param("Version"));
        let api = Api::of(action.as_deref(), version.as_deref());
        let Some(action) = action else {
            let e = AwsError::sender("MissingAction", "The request must contain the parameter Action.");
            return cx.fail(api.dialect(), &e);
        };
        // Signature and protocol parameters are not action input.
        params.retain(|(k, _)| !PROTOCOL_PARAMETERS.contains(&k.as_str()));
        // SNS lets a subscriber confirm, and unsubscribe, without a
        // signature (the token and the subscription ARN are the secrets);
        // the topic engine decides which subscriptions need one to end.
        let unsigned_ok = api == Api::Sns && matches!(action.as_str(), "ConfirmSubscription" | "Unsubscribe");
        let signed = match signed {
            Ok(()) => true,
            Err(e) if unsigned_ok && e.code == "MissingAuthenticationToken" => false,
            Err(e) => return cx.fail(api.dialect(), &e),
        };
        if let Some(p) = problem {
            let e = match api {
                Api::Sqs if p.in_message() => {
                    sqs::error::Error::from(QueueError::InvalidMessageContents(p.message)).to_aws()
                }
                Api::Sqs => sqs::error::Error::from(QueueError::InvalidParameterValue(p.message)).to_aws(),
                _ => AwsError::sender("InvalidParameter", p.message),
            };
            return cx.fail(api.dialect(), &e);
        }
        match api {
            Api::Sqs => self.sqs_query(uri, &action, &params, cx).await,
            Api::Sns => self.sns(&action, &query::nested_to_json(&params), signed, cx).await,
            Api::Sts => self.sts(&action, cx),
        }
    }

    /// An SQS Query request.
    async fn sqs_query(
        &self,
        uri: &http::Uri,
        action: &str,
        params: &[(String, String)],
        cx: Call<'_>,
    ) -> Response<GatewayBody> {
        let mut input = query::flattened_to_json(params);
        // Older SDKs post queue actions to the queue's URL instead of naming it.
        let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
        if input.get("QueueUrl").is_none() && segments.len() == 2 {
            input["QueueUrl"] = Value::String(format!("/{}/{}", segments[0], segments[1]));
        }
        match sqs::op::Op::parse(action, &input) {
            Ok(op) => self.sqs(op, cx).await,
            Err(e) => cx.fail(sqs::DIALECT, &e.to_aws()),
        }
    }

    /// An SNS request: parse, apply to the topic engine, answer in XML.
    async fn sns(&self, action: &str, input: &Value, signed: bool, cx: Call<'_>) -> Response<GatewayBody> {
        let Some(notifier) = &self.notifier else {
            let e = AwsError::sender("InvalidAction", "Topics are not enabled on this gateway.");
            return cx.fail(sns::DIALECT, &e);
        };
        let op = match sns::op::Op::parse(action, input) {
            Ok(op) => op,
            Err(e) => return cx.fail(sns::DIALECT, &e.to_aws()),
        };
        let action = op.name();
        match op.apply(notifier, signed).await {
            Ok(out) => respond(StatusCode::OK, "text/xml", out.to_xml(action, cx.request_id), cx.request_id),
            Err(e) => {
                if e.is_internal() {
                    tracing::error!(action, error = %e, "topic action failed");
                }
                cx.fail(sns::DIALECT, &e.to_aws())
            }
        }
    }

    /// An STS request: only `GetCallerIdentity` is answered.
    fn sts(&self, action: &str, cx: Call<'_>) -> Response<GatewayBody> {
        if action != "GetCallerIdentity" {
            return cx.fail(sts::DIALECT, &sts::unsupported(action));
        }
        let identity =
            sts::Identity { account: &self.engine.account().id, access_key: cx.access_key.as_deref() };
        match cx.protocol {
            Protocol::Json => respond(StatusCode::OK, JSON_TYPE, identity.to_json(), cx.request_id),
            Protocol::Query => {
                respond(StatusCode::OK, "text/xml", identity.to_xml(cx.request_id), cx.request_id)
            }
        }
    }

    /// Applies an SQS operation and encodes its answer.
    async fn sqs(&self, op: sqs::op::Op, cx: Call<'_>) -> Response<GatewayBody> {
        let action = op.name();
        let caller = sqs::apply::Caller { host: cx.host, sender: cx.sender.clone() };
        match op.apply(&self.engine, caller).await {
            Ok(out) => match cx.protocol {
                Protocol::Json => respond(StatusCode::OK, JSON_TYPE, out.to_json(), cx.request_id),
                Protocol::Query => {
                    respond(StatusCode::OK, "text/xml", out.to_xml(action, cx.request_id), cx.request_id)
                }
            },
            Err(e) => {
                if e.is_internal() {
                    tracing::error!(action, error = %e, "queue action failed");
                }
                cx.fail(sqs::DIALECT, &e.to_aws())
            }
        }
    }
}

const JSON_TYPE: &str = "application/x-amz-json-1.0";

/// The service a Query request is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Sqs,
    Sns,
    Sts,
}

impl Api {
    /// By `Version`, else by the action's name (SQS's when unknown).
    fn of(action: Option<&str>, version: Option<&str>) -> Api {
        match version {
            Some("2010-03-31") => Api::Sns,
            Some("2011-06-15") => Api::Sts,
            Some(_) => Api::Sqs,
            None if action.is_some_and(|a| sns::ACTIONS.contains(&a)) => Api::Sns,
            None if action == Some("GetCallerIdentity") => Api::Sts,
            None => Api::Sqs,
        }
    }

    fn dialect(self) -> Dialect {
        match self {
            Api::Sqs => sqs::DIALECT,
            Api::Sns => sns::DIALECT,
            Api::Sts => sts::DIALECT,
        }
    }
}

/// Query parameters that carry the protocol or an old-style signature.
const PROTOCOL_PARAMETERS: &[&str] = &[
    "Action",
    "Version",
    "AWSAccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "Timestamp",
    "Expires",
];

/// The whole request body, within [`MAX_REQUEST`] and the body deadline.
async fn read_body<B>(body: B) -> Result<Bytes, AwsError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::body::BoxError>,
{
    let e = match Limited::new(body, MAX_REQUEST).collect().await {
        Ok(b) => return Ok(b.to_bytes()),
        Err(e) => e,
    };
    if let Some(t) = crate::body::body_timeout_in(&*e) {
        return Err(AwsError::new(StatusCode::REQUEST_TIMEOUT, "RequestTimeout", t.to_string()));
    }
    if e.is::<http_body_util::LengthLimitError>() {
        return Err(AwsError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "The request body is too large.",
        ));
    }
    Err(AwsError::sender("MalformedInput", format!("The request body could not be read: {e}")))
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
