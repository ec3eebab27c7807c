//! [`AuthLayer`]: JWT authentication (jsonwebtoken) for routes with `auth`.
//!
//! The token is read from the route's `token_from` (default
//! `Authorization: Bearer`), verified by the route's provider (see
//! [`provider`]), then held against the route's `scopes` and `claims`.
//! On success the claims travel on with the exchange (for `jwt:` throttle
//! keys and message sources), `claims_to_headers` set upstream headers
//! (replacing any the client sent) and, with `forward_token: false`, the
//! token is taken off the request.
//!
//! Answers (RFC 6750): `401` with `WWW-Authenticate: Bearer realm=...`
//! (and `error="invalid_token"` unless the token was missing), `403`
//! `insufficient_scope`, `503` while the provider has never had keys. The
//! token itself is never logged or echoed.

pub mod cache;
pub mod fetch;
pub mod keys;
pub mod provider;
pub mod token;

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, COOKIE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};
use tower::{Layer, Service};

use crate::body::GatewayBody;
use crate::config::{RouteAuth, TokenSource};
use crate::error::{BoxHttpError, HttpError};
use crate::exchange::{claim_text, Claims, Exchange, ExchangeService};
use crate::middleware::gate::{Answer, GateFuture};
pub use provider::{Provider, Verified};
use token::TokenError;

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("this route needs a bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("the token lacks what this route requires: {why}")]
    Forbidden { scope: String, why: String },
    #[error("the token cannot be checked yet: provider `{0}` has no keys")]
    NoKeys(Arc<str>),
}

/// `"` and `\` cannot appear in a quoted-string unescaped; control
/// characters not at all.
fn quoted(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).map(|c| if c == '"' || c == '\\' { '\'' } else { c }).collect()
}

impl HttpError for AuthError {
    fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Invalid(_) => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden { .. } => StatusCode::FORBIDDEN,
            AuthError::NoKeys(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Invalid(_) => "invalid_token",
            AuthError::Forbidden { .. } => "insufficient_scope",
            AuthError::NoKeys(_) => "auth_unavailable",
        }
    }

    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let challenge = match self {
            AuthError::Missing => "Bearer realm=\"gatehouse\"".to_owned(),
            AuthError::Invalid(why) => format!(
                "Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"{}\"",
                quoted(why)
            ),
            AuthError::Forbidden { scope, why } => format!(
                "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", error_description=\"{}\", scope=\"{}\"",
                quoted(why),
                quoted(scope)
            ),
            AuthError::NoKeys(_) => return vec![(RETRY_AFTER, HeaderValue::from_static("5"))],
        };
        HeaderValue::from_str(&challenge).map(|v| vec![(WWW_AUTHENTICATE, v)]).unwrap_or_default()
    }
}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Missing => AuthError::Missing,
            TokenError::Invalid(why) => AuthError::Invalid(why),
        }
    }
}

/// What a route requires of a verified token, and what it does with it.
pub struct Rules {
    scopes: Vec<String>,
    claims: Vec<(String, Vec<String>)>,
    claims_to_headers: Vec<(String, HeaderName)>,
    forward_token: bool,
    token_from: TokenSource,
}

impl Rules {
    pub fn new(auth: &RouteAuth) -> Self {
        Self {
            scopes: auth.scopes.clone(),
            claims: auth.claims.clone(),
            claims_to_headers: auth
                .claims_to_headers
                .iter()
                .filter_map(|(c, h)| Some((c.clone(), HeaderName::from_bytes(h.as_bytes()).ok()?)))
                .collect(),
            forward_token: auth.forward_token,
            token_from: auth.token_from.clone(),
        }
    }

    /// The route's scopes and claim values, held against `claims`.
    fn check(&self, claims: &Claims) -> Result<(), AuthError> {
        if self.scopes.is_empty() && self.claims.is_empty() {
            return Ok(());
        }
        let granted = scopes_of(claims);
        let missing: Vec<&str> =
            self.scopes.iter().filter(|s| !granted.contains(&s.as_str())).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(AuthError::Forbidden {
                scope: self.scopes.join(" "),
                why: format!("missing scope {}", missing.join(" ")),
            });
        }
        for (name, allowed) in &self.claims {
            if !claim_matches(claims.get(name), allowed) {
                return Err(AuthError::Forbidden {
                    scope: self.scopes.join(" "),
                    why: format!("claim `{}` does not have an allowed value", token::printable(name)),
                });
            }
        }
        Ok(())
    }

    /// Sets `claims_to_headers` (removing what the client sent under those
    /// names) and takes the token off when it is not forwarded.
    fn apply(&self, headers: &mut HeaderMap, claims: &Claims) {
        for (claim, header) in &self.claims_to_headers {
            headers.remove(header);
            if let Some(v) = claim_text(claims, claim).and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(header.clone(), v);
            }
        }
        if !self.forward_token {
            match &self.token_from {
                TokenSource::Bearer => {
                    headers.remove(AUTHORIZATION);
                }
                TokenSource::Header(name) => {
                    headers.remove(name.as_str());
                }
                TokenSource::Cookie(name) => strip_cookie(headers, name),
            }
        }
    }
}

/// `scope` (space-separated) or `scp` (a string or a list).
fn scopes_of(claims: &Claims) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(serde_json::Value::String(s)) => out.extend(s.split(' ').filter(|s| !s.is_empty())),
            Some(serde_json::Value::Array(list)) => out.extend(list.iter().filter_map(|v| v.as_str())),
            _ => {}
        }
    }
    out
}

/// A claim has an allowed value: itself, or (for a list) one of its items.
fn claim_matches(value: Option<&serde_json::Value>, allowed: &[String]) -> bool {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Some(v.to_string()),
        _ => None,
    };
    match value {
        Some(serde_json::Value::Array(items)) => items.iter().filter_map(text).any(|t| allowed.contains(&t)),
        Some(v) => text(v).is_some_and(|t| allowed.contains(&t)),
        None => false,
    }
}

fn strip_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(k, _)| k != name))
        .map(str::to_owned)
        .collect();
    headers.remove(COOKIE);
    if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
        if !kept.is_empty() {
            headers.insert(COOKIE, v);
        }
    }
}

#[derive(Clone)]
pub struct AuthLayer {
    provider: Arc<Provider>,
    rules: Arc<Rules>,
}

impl AuthLayer {
    pub fn new(provider: Arc<Provider>, rules: Rules) -> Self {
        Self { provider, rules: Arc::new(rules) }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner, provider: self.provider.clone(), rules: self.rules.clone() }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    provider: Arc<Provider>,
    rules: Arc<Rules>,
}

impl<S> Auth<S> {
    /// Admits `ex` with `claims`, or refuses it.
    fn admit(&self, ex: &mut Exchange, claims: Arc<Claims>) -> Result<(), AuthError> {
        self.rules.check(&claims)?;
        self.rules.apply(ex.request.headers_mut(), &claims);
        ex.claims = Some(claims);
        Ok(())
    }
}

impl<S> Service<Exchange> for Auth<S>
where
    S: ExchangeService,
{
    type Response = Response<GatewayBody>;
    type Error = BoxHttpError;
    type Future = GateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxHttpError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut ex: Exchange) -> Self::Future {
        let reject = |e: AuthError| GateFuture::refuse(e);
        let verified = match token::extract(ex.request.headers(), &self.rules.token_from) {
            Ok(token) => self.provider.verify(token),
            Err(e) => return reject(e.into()),
        };
        match verified {
            Verified::Claims(claims) => match self.admit(&mut ex, claims) {
                Ok(()) => GateFuture::Passed { inner: self.inner.call(ex) },
                Err(e) => reject(e),
            },
            Verified::Refused(e) => reject(e.into()),
            Verified::NoKeys => reject(AuthError::NoKeys(self.provider.name().clone())),
            Verified::UnknownKey(kid) => GateFuture::Later { future: refetch(self.clone(), ex, kid) },
        }
    }
}

/// A token named a key the provider does not know: fetch the keys again
/// (rate-limited) and verify once more.
fn refetch<S>(mut auth: Auth<S>, mut ex: Exchange, kid: String) -> BoxFuture<'static, Answer>
where
    S: ExchangeService,
{
    Box::pin(async move {
        let unknown = || AuthError::Invalid(format!("unknown key `{}`", token::printable(&kid)));
        if !auth.provider.refetch_for(&kid).await {
            return Err(unknown().into());
        }
        let token = token::extract(ex.request.headers(), &auth.rules.token_from).map_err(AuthError::from)?;
        match auth.provider.verify(token) {
            Verified::Claims(claims) => auth.admit(&mut ex, claims)?,
            Verified::Refused(e) => return Err(AuthError::from(e).into()),
            Verified::NoKeys | Verified::UnknownKey(_) => return Err(unknown().into()),
        }
        auth.inner.call(ex).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: serde_json::Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    fn rules(scopes: &[&str], claims: &[(&str, &[&str])]) -> Rules {
        Rules {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            claims: claims
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            claims_to_headers: vec![("sub".into(), HeaderName::from_static("x-user-id"))],
            forward_token: false,
            token_from: TokenSource::Cookie("session".into()),
        }
    }

    #[test]
    fn scopes_come_from_scope_or_scp_and_all_are_required() {
        let r = rules(&["orders:read", "orders:write"], &[]);
        assert!(r.check(&claims(json!({"scope": "orders:read orders:write"}))).is_ok());
        assert!(r.check(&claims(json!({"scp": ["orders:write", "orders:read"]}))).is_ok());
        let err = r.check(&claims(json!({"scope": "orders:read"}))).unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        let challenge = err.headers()[0].1.to_str().unwrap().to_owned();
        assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
        assert!(challenge.contains("scope=\"orders:read orders:write\""), "{challenge}");
    }

    #[test]
    fn claims_need_an_allowed_value() {
        let r = rules(&[], &[("tier", &["gold", "silver"]), ("groups", &["admins"])]);
        assert!(r.check(&claims(json!({"tier": "gold", "groups": ["users", "admins"]}))).is_ok());
        assert!(r.check(&claims(json!({"tier": "bronze", "groups": ["admins"]}))).is_err());
        assert!(r.check(&claims(json!({"tier": "gold"}))).is_err());
    }

    #[test]
    fn claim_headers_replace_the_clients_and_the_token_can_stay_behind() {
        let r = rules(&[], &[]);
        let mut h = HeaderMap::new();
        h.insert("x-user-id", "forged".parse().unwrap());
        h.insert(COOKIE, "a=1; session=t.o.k; b=2".parse().unwrap());
        r.apply(&mut h, &claims(json!({"sub": "alice"})));
        assert_eq!(h["x-user-id"], "alice");
        assert_eq!(h[COOKIE], "a=1; b=2");
        // A claim the token does not have still removes the client's value.
        let mut h = HeaderMap::new();
        h.insert("x-user-id", "forged".parse().unwrap());
        r.apply(&mut h, &claims(json!({})));
        assert!(h.get("x-user-id").is_none());
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        let missing = AuthError::Missing.headers();
        assert_eq!(missing[0].1, "Bearer realm=\"gatehouse\"");
        let invalid = AuthError::Invalid("the token has \"expired\"".into()).headers();
        assert_eq!(
            invalid[0].1,
            "Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"the token has 'expired'\""
        );
        assert_eq!(AuthError::NoKeys("main".into()).status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
