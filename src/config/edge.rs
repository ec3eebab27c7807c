//! The edge-protection side of `routes.yaml`: `throttle` (top level and per
//! route), `trusted_proxies`, `auth.jwt.*` and a route's token
//! requirements (`auth`, `scopes`, `claims`, `claims_to_headers`,
//! `forward_token`, `token_from`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::decode::{Decoder, Node, Table};
use super::{KeyPath, Problem};
use crate::syntax::is_token;

/// Default of `max_keys`: buckets one limit keeps at most.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Default of a provider's `leeway`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Default of a provider's `jwks_refresh`.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(600);

/// One token-bucket limit.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitConfig {
    /// Its name in `RateLimit-Policy` and in metrics.
    pub name: String,
    pub rate: Rate,
    /// Requests a full bucket admits at once.
    pub burst: u32,
    pub key: LimitKey,
    /// Buckets kept at most (least recently used idle ones go first).
    pub max_keys: usize,
    /// Where it is declared.
    pub at: KeyPath,
}

impl LimitConfig {
    /// Whether `other` counts the same way (a reload keeps its buckets).
    pub fn same_bucket(&self, other: &LimitConfig) -> bool {
        (&self.name, self.rate, self.burst, &self.key, self.max_keys)
            == (&other.name, other.rate, other.burst, &other.key, other.max_keys)
    }
}

/// `N/s`, `N/min`, `N/h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    pub fn parse(text: &str) -> Result<Rate, String> {
        let expected = || format!("expected a rate such as `100/s`, `6000/min` or `10000/h`, found `{text}`");
        let (n, unit) = text.trim().split_once('/').ok_or_else(expected)?;
        let count: u32 = n.trim().parse().map_err(|_| expected())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(expected()),
        };
        if count == 0 {
            return Err("a rate must admit at least one request (`0/s` would refuse everything; use `respond` for that)".into());
        }
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// What a limit counts by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitKey {
    /// The client's address (see `trusted_proxies`).
    ClientIp,
    /// One bucket for the whole route.
    Route,
    /// A request header's value (lower-case name).
    Header(String),
    /// A claim of the verified token.
    Jwt(String),
}

impl LimitKey {
    /// Whether the limit runs after authentication (per consumer) rather
    /// than right after route match (per client).
    pub fn per_consumer(&self) -> bool {
        matches!(self, LimitKey::Header(_) | LimitKey::Jwt(_))
    }
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::ClientIp => f.write_str("client_ip"),
            LimitKey::Route => f.write_str("route"),
            LimitKey::Header(h) => write!(f, "header:{h}"),
            LimitKey::Jwt(c) => write!(f, "jwt:{c}"),
        }
    }
}

/// A route's `throttle:`.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum RouteThrottle {
    /// The top-level `throttle`.
    #[default]
    Inherit,
    /// `throttle: off`.
    Off,
    Limits(Vec<LimitConfig>),
}

/// A secret from the config (an HMAC key): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// JWS algorithms a provider may allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl JwtAlgorithm {
    pub const ALL: [JwtAlgorithm; 12] = [
        Self::HS256,
        Self::HS384,
        Self::HS512,
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];
    /// The default allow-list: every asymmetric algorithm (all but the
    /// first three).
    pub const ASYMMETRIC: &[JwtAlgorithm] = Self::ALL.split_at(3).1;

    pub fn name(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    pub fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }
}

/// Where a provider's verification keys come from.
#[derive(Clone, Debug, PartialEq)]
pub enum JwtKeys {
    JwksFile(PathBuf),
    /// Fetched over HTTP(S) and refreshed.
    JwksUrl(String),
    /// An HMAC secret (HS256/384/512).
    Secret(Secret),
    /// A PEM public key file (RSA, EC or Ed25519).
    PublicKey(PathBuf),
}

/// `auth.jwt.NAME`.
#[derive(Clone, Debug, PartialEq)]
pub struct JwtProviderConfig {
    pub name: String,
    /// Required `iss` value, when set.
    pub issuer: Option<String>,
    /// Accepted `aud` values; when not empty, the token must name one.
    pub audiences: Vec<String>,
    pub algorithms: Vec<JwtAlgorithm>,
    pub leeway: Duration,
    pub keys: JwtKeys,
    /// How often a `jwks_url` is fetched again.
    pub jwks_refresh: Duration,
    /// Extra CA for a `jwks_url` served with a private certificate.
    pub tls_ca: Option<PathBuf>,
    pub at: KeyPath,
}

/// Where a route reads the token from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer …`.
    #[default]
    Bearer,
    Header(String),
    Cookie(String),
}

/// A route's token requirements.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteAuth {
    /// The provider under `auth.jwt`.
    pub provider: String,
    /// All required.
    pub scopes: Vec<String>,
    /// Claim → allowed values (one of them required).
    pub claims: Vec<(String, Vec<String>)>,
    /// Claim → upstream request header (overwrites the client's).
    pub claims_to_headers: Vec<(String, String)>,
    /// Whether `Authorization` goes on to the upstream.
    pub forward_token: bool,
    pub token_from: TokenSource,
    pub at: KeyPath,
}

/// `trusted_proxies: [CIDR, …]` (a bare address is a /32 or /128).
pub(super) fn decode_trusted_proxies(d: &mut Decoder<'_>, node: &Node<'_>) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for item in d.list(node) {
        let Some(s) = d.string(&item) else { continue };
        let parsed =
            s.parse::<ipnet::IpNet>().or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => out.push(net.trunc()),
            Err(_) => d.invalid(
                &item,
                format!("expected an address range such as `10.0.0.0/8` or `::1/128`, found `{s}`"),
            ),
        }
    }
    out
}

/// A `throttle:` value: one limit, a list of limits, or `off` (`None`).
pub(super) fn decode_throttle(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Vec<LimitConfig>> {
    if super::is_off(node) {
        return None;
    }
    let limits: Vec<LimitConfig> = if node.value.is_sequence() {
        let items = d.list(node);
        if items.is_empty() {
            d.invalid(node, "list at least one limit, or write `off`");
        }
        items.iter().filter_map(|n| decode_limit(d, n)).collect()
    } else {
        decode_limit(d, node).into_iter().collect()
    };
    let mut seen: Vec<&str> = Vec::new();
    for l in &limits {
        if seen.contains(&l.name.as_str()) {
            let why = if node.value.is_sequence() {
                format!("limit name `{}` is used twice; give each limit its own `name`", l.name)
            } else {
                format!("limit name `{}` is used twice", l.name)
            };
            d.report(Problem::at_value(l.at.key("name"), why));
        }
        seen.push(&l.name);
    }
    Some(limits)
}

fn decode_limit(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<LimitConfig> {
    let t = d.table(node, &["name", "rate", "burst", "key", "max_keys"], &[])?;
    let rate = t.require(d, "rate").and_then(|n| {
        let s = match n.value {
            serde_yaml::Value::String(_) => d.string(&n)?,
            other => {
                d.invalid(
                    &n,
                    format!("expected a rate such as `100/s`, found {}", super::decode::describe(other)),
                );
                return None;
            }
        };
        Rate::parse(&s).map_err(|e| d.invalid(&n, e)).ok()
    });
    let burst = match t.get("burst") {
        Some(n) => Some(d.integer(&n, 1, u64::from(u32::MAX))? as u32),
        None => rate.map(|r| r.count),
    };
    let key = match t.get("key") {
        Some(n) => decode_limit_key(d, &n)?,
        None => LimitKey::ClientIp,
    };
    let name = match t.get("name") {
        Some(n) => {
            let s = d.string(&n)?;
            if !is_token(&s) {
                d.invalid(&n, format!("`{s}` is not a valid limit name (letters, digits and `-_.` only)"));
                return None;
            }
            s
        }
        None => "default".to_owned(),
    };
    let max_keys = t
        .get("max_keys")
        .and_then(|n| d.integer(&n, 1, 100_000_000))
        .map_or(DEFAULT_MAX_KEYS, |n| n as usize);
    Some(LimitConfig { name, rate: rate?, burst: burst?, key, max_keys, at: node.path.clone() })
}

fn decode_limit_key(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<LimitKey> {
    let s = d.string(node)?;
    match s.as_str() {
        "client_ip" => return Some(LimitKey::ClientIp),
        "route" => return Some(LimitKey::Route),
        _ => {}
    }
    if let Some(h) = s.strip_prefix("header:") {
        if is_token(h) {
            return Some(LimitKey::Header(h.to_ascii_lowercase()));
        }
        d.invalid(node, format!("`{h}` is not a header name"));
        return None;
    }
    if let Some(c) = s.strip_prefix("jwt:") {
        if !c.is_empty() {
            return Some(LimitKey::Jwt(c.to_owned()));
        }
        d.invalid(node, "name the claim, as in `jwt:sub`");
        return None;
    }
    d.invalid(
        node,
        format!("unknown key `{s}`: expected `client_ip`, `route`, `header:NAME` or `jwt:CLAIM`"),
    );
    None
}

/// `auth:` at the top level: `jwt:` providers by name.
pub(super) fn decode_auth(d: &mut Decoder<'_>, node: &Node<'_>, base: &Path) -> Vec<JwtProviderConfig> {
    let Some(t) = d.table(node, &["jwt"], &[]) else { return Vec::new() };
    let Some(jwt) = t.get("jwt") else { return Vec::new() };
    d.entries(&jwt).into_iter().filter_map(|(name, n)| decode_provider(d, name, &n, base)).collect()
}

const PROVIDER_KEYS: &[&str] = &[
    "issuer",
    "audiences",
    "algorithms",
    "leeway",
    "jwks_file",
    "jwks_url",
    "secret",
    "public_key",
    "jwks_refresh",
    "tls",
];

fn decode_provider(
    d: &mut Decoder<'_>,
    name: String,
    node: &Node<'_>,
    base: &Path,
) -> Option<JwtProviderConfig> {
    let t = d.table(node, PROVIDER_KEYS, &[])?;
    let issuer = t.get("issuer").and_then(|n| d.string(&n));
    let audiences = t.get("audiences").map(|n| strings(d, &n)).unwrap_or_default();
    let leeway = t.get("leeway").and_then(|n| d.duration(&n)).unwrap_or(DEFAULT_LEEWAY);
    let jwks_refresh = match t.get("jwks_refresh") {
        Some(n) => match d.duration(&n) {
            Some(v) if v < Duration::from_secs(1) => {
                d.invalid(&n, "must be at least 1s");
                DEFAULT_JWKS_REFRESH
            }
            Some(v) => v,
            None => DEFAULT_JWKS_REFRESH,
        },
        None => DEFAULT_JWKS_REFRESH,
    };
    let tls_ca = t.get("tls").and_then(|n| {
        let tt = d.table(&n, &["ca"], &[])?;
        tt.get("ca").and_then(|c| d.string(&c)).map(|p| base.join(p))
    });
    let keys = decode_keys(d, &t, node, base)?;
    let algorithms = decode_algorithms(d, &t, &keys)?;
    if tls_ca.is_some() && !matches!(keys, JwtKeys::JwksUrl(_)) {
        d.report(Problem::at_key(t.path.key("tls"), "`tls` applies to `jwks_url` only"));
    }
    Some(JwtProviderConfig {
        name,
        issuer,
        audiences,
        algorithms,
        leeway,
        keys,
        jwks_refresh,
        tls_ca,
        at: node.path.clone(),
    })
}

fn decode_keys(d: &mut Decoder<'_>, t: &Table<'_>, node: &Node<'_>, base: &Path) -> Option<JwtKeys> {
    let sources: Vec<&str> =
        ["jwks_file", "jwks_url", "secret", "public_key"].into_iter().filter(|k| t.has_key(k)).collect();
    let key = match sources.as_slice() {
        [one] => *one,
        [] => {
            d.invalid(
                node,
                "a provider needs its keys: one of `jwks_file`, `jwks_url`, `secret`, `public_key`",
            );
            return None;
        }
        many => {
            d.invalid(node, format!("a provider has one key source, found {}", many.join(" and ")));
            return None;
        }
    };
    let n = t.get(key)?;
    let value = d.string(&n)?;
    Some(match key {
        "jwks_file" => JwtKeys::JwksFile(base.join(value)),
        "public_key" => JwtKeys::PublicKey(base.join(value)),
        "secret" => {
            if value.len() < 32 {
                d.invalid(&n, "an HMAC secret must be at least 32 bytes (RFC 7518 §3.2 for HS256)");
            }
            JwtKeys::Secret(Secret(value))
        }
        _ => {
            let ok = value.starts_with("https://") || value.starts_with("http://");
            if !ok {
                d.invalid(&n, format!("expected an `https://` URL, found `{value}`"));
                return None;
            }
            JwtKeys::JwksUrl(value)
        }
    })
}

fn decode_algorithms(d: &mut Decoder<'_>, t: &Table<'_>, keys: &JwtKeys) -> Option<Vec<JwtAlgorithm>> {
    let hmac_key = matches!(keys, JwtKeys::Secret(_));
    let Some(n) = t.get("algorithms") else {
        return Some(if hmac_key { vec![JwtAlgorithm::HS256] } else { JwtAlgorithm::ASYMMETRIC.to_vec() });
    };
    let mut out = Vec::new();
    for item in d.list(&n) {
        let Some(s) = d.string(&item) else { continue };
        let Some(alg) = JwtAlgorithm::ALL.into_iter().find(|a| a.name() == s) else {
            let names: Vec<&str> = JwtAlgorithm::ALL.iter().map(|a| a.name()).collect();
            d.invalid(&item, format!("unknown algorithm `{s}`; expected one of: {}", names.join(", ")));
            continue;
        };
        if alg.is_hmac() != hmac_key {
            let why = if hmac_key {
                format!("`{s}` needs a public key; a `secret` verifies HS256, HS384 and HS512 only")
            } else {
                format!("`{s}` is an HMAC algorithm: it is allowed only with a `secret`")
            };
            d.invalid(&item, why);
            continue;
        }
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    if out.is_empty() {
        d.invalid(&n, "allow at least one algorithm");
        return None;
    }
    Some(out)
}

fn strings(d: &mut Decoder<'_>, node: &Node<'_>) -> Vec<String> {
    match node.value {
        serde_yaml::Value::String(_) => d.string(node).into_iter().collect(),
        _ => d.list(node).iter().filter_map(|n| d.string(n)).collect(),
    }
}

/// A route's `auth` and the keys that go with it.
pub(super) fn decode_route_auth(d: &mut Decoder<'_>, t: &Table<'_>) -> Option<RouteAuth> {
    const WITH_AUTH: [&str; 5] = ["scopes", "claims", "claims_to_headers", "forward_token", "token_from"];
    let Some(n) = t.get("auth") else {
        for k in WITH_AUTH.into_iter().filter(|k| t.has_key(k)) {
            d.report(Problem::at_key(t.path.key(k), format!("`{k}` applies to routes with `auth`")));
        }
        return None;
    };
    let provider = d.string(&n)?;
    let scopes = t.get("scopes").map(|n| strings(d, &n)).unwrap_or_default();
    let mut claims = Vec::new();
    if let Some(c) = t.get("claims") {
        for (name, v) in d.entries(&c) {
            let values = strings(d, &v);
            if values.is_empty() {
                d.invalid(&v, "list the values the claim may have");
            }
            claims.push((name, values));
        }
    }
    let mut claims_to_headers = Vec::new();
    if let Some(c) = t.get("claims_to_headers") {
        for (claim, v) in d.entries(&c) {
            let Some(h) = d.string(&v) else { continue };
            if !is_token(&h) {
                d.invalid(&v, format!("`{h}` is not a header name"));
                continue;
            }
            claims_to_headers.push((claim, h.to_ascii_lowercase()));
        }
    }
    let forward_token = t.get("forward_token").and_then(|n| d.bool(&n)).unwrap_or(true);
    let token_from = match t.get("token_from") {
        None => TokenSource::Bearer,
        Some(n) => {
            let s = d.string(&n)?;
            if let Some(h) = s.strip_prefix("header:").filter(|h| is_token(h)) {
                TokenSource::Header(h.to_ascii_lowercase())
            } else if let Some(c) = s.strip_prefix("cookie:").filter(|c| is_token(c)) {
                TokenSource::Cookie(c.to_owned())
            } else if s == "bearer" {
                TokenSource::Bearer
            } else {
                d.invalid(&n, format!("expected `bearer`, `header:NAME` or `cookie:NAME`, found `{s}`"));
                return None;
            }
        }
    };
    Some(RouteAuth { provider, scopes, claims, claims_to_headers, forward_token, token_from, at: n.path })
}
