//! A JWT provider (`auth.jwt.NAME`): its keys, how it verifies a token, the
//! cache of verified tokens, and the refresh of a `jwks_url`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;

use super::cache::{self, CacheMetrics, TokenCache};
use super::fetch::Fetcher;
use super::keys::{self, KeySet};
use super::token::{self, TokenError};
use crate::config::{JwtAlgorithm, JwtKeys, JwtProviderConfig, Problem};
use crate::exchange::Claims;

/// A token with an unknown `kid` makes the provider fetch its keys again
/// at most this often.
pub const REFETCH_EVERY: Duration = Duration::from_secs(30);
/// A refresh never comes sooner than this, whatever `max-age` says.
const MIN_REFRESH: Duration = Duration::from_secs(5);

/// What verifying a token came to.
pub enum Verified {
    Claims(Arc<Claims>),
    Refused(TokenError),
    /// No key set was ever obtained (`503`, not the client's fault).
    NoKeys,
    /// The token names a key the set does not have: worth one fetch.
    UnknownKey(String),
}

pub struct Provider {
    name: Arc<str>,
    config: JwtProviderConfig,
    keys: ArcSwapOption<KeySet>,
    /// One `Validation` per allowed algorithm, built once.
    validations: HashMap<JwtAlgorithm, Validation>,
    cache: TokenCache,
    fetcher: Option<Fetcher>,
    last_refetch: Mutex<Option<Instant>>,
    /// Held while fetching, so that concurrent unknown-kid tokens wait for
    /// one fetch instead of starting several.
    fetching: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Provider {
    /// Builds a provider; local keys are read now, a `jwks_url` is fetched
    /// by [`Provider::start_refresh`].
    pub fn new(config: &JwtProviderConfig, metrics: CacheMetrics) -> Result<Provider, Problem> {
        let at = |k: &str| config.at.key(k);
        let read = |path: &Path, key: &str| {
            std::fs::read(path)
                .map_err(|e| Problem::at_value(at(key), format!("cannot read `{}`: {e}", path.display())))
        };
        let (keys, fetcher) = match &config.keys {
            JwtKeys::JwksFile(path) => {
                let set = KeySet::from_jwks(&read(path, "jwks_file")?)
                    .map_err(|e| Problem::at_value(at("jwks_file"), format!("`{}`: {e}", path.display())))?;
                (Some(set), None)
            }
            JwtKeys::PublicKey(path) => {
                let set = KeySet::from_pem(&read(path, "public_key")?, &config.algorithms)
                    .map_err(|e| Problem::at_value(at("public_key"), format!("`{}`: {e}", path.display())))?;
                (Some(set), None)
            }
            JwtKeys::Secret(secret) => {
                let set = KeySet::from_secret(&secret.0).map_err(|e| Problem::at_value(at("secret"), e))?;
                (Some(set), None)
            }
            JwtKeys::JwksUrl(url) => {
                let tls = crate::tls::client_config(config.tls_ca.as_deref(), &at("tls"))?;
                let fetcher = Fetcher::new(url, tls).map_err(|e| Problem::at_value(at("jwks_url"), e))?;
                (None, Some(fetcher))
            }
        };
        Ok(Provider {
            name: config.name.as_str().into(),
            validations: config.algorithms.iter().map(|a| (*a, validation(config, *a))).collect(),
            config: config.clone(),
            keys: ArcSwapOption::new(keys.map(Arc::new)),
            cache: TokenCache::new(cache::CAPACITY, metrics),
            fetcher,
            last_refetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn config(&self) -> &JwtProviderConfig {
        &self.config
    }

    /// Whether the provider has keys to verify with.
    pub fn has_keys(&self) -> bool {
        self.keys.load().is_some()
    }

    /// Verifies `token` (from the cache when it was verified before).
    pub fn verify(&self, token: &[u8]) -> Verified {
        if let Err(e) = token::check_size(token) {
            return Verified::Refused(e);
        }
        let guard = self.keys.load();
        let Some(keys) = guard.as_ref() else { return Verified::NoKeys };
        let now = now_secs();
        // A token in the cache was taken apart and verified before.
        let cache_key = self.cache.key(token);
        let present = |kid: Option<&str>| kid.is_none_or(|k| keys.has(k));
        if let Some(claims) = self.cache.get(cache_key, token, now, present) {
            return Verified::Claims(claims);
        }
        let token = match token::as_text(token) {
            Ok(text) => text,
            Err(e) => return Verified::Refused(e),
        };
        let [header, _, _] = match token::split(token) {
            Ok(parts) => parts,
            Err(e) => return Verified::Refused(e),
        };
        let jose = match token::check_header(header, &self.config.algorithms) {
            Ok(h) => h,
            Err(e) => return Verified::Refused(e),
        };
        let alg = keys::algorithm(jose.alg);
        let mut refusal = None;
        for key in keys.candidates(jose.kid.as_deref(), alg) {
            match jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validations[&jose.alg]) {
                Ok(data) => return self.accept((cache_key, token), data.claims, key.kid.clone(), now),
                Err(e) => {
                    let signature_failed = matches!(e.kind(), ErrorKind::InvalidSignature);
                    // A claim problem found after a good signature is the
                    // answer; a bad signature may still match another key.
                    if refusal.is_none() || !signature_failed {
                        refusal = Some(describe(e.kind()));
                    }
                    if !signature_failed {
                        break;
                    }
                }
            }
        }
        match (refusal, jose.kid) {
            (Some(why), _) => Verified::Refused(TokenError::Invalid(why)),
            (None, Some(kid)) if self.fetcher.is_some() => Verified::UnknownKey(kid),
            (None, Some(kid)) => {
                Verified::Refused(TokenError::Invalid(format!("unknown key `{}`", token::printable(&kid))))
            }
            (None, None) => Verified::Refused(TokenError::Invalid("no key for the token's algorithm".into())),
        }
    }

    /// The last checks jsonwebtoken does not make, then into the cache.
    fn accept(
        &self,
        (cache_key, token): (u64, &str),
        claims: Claims,
        kid: Option<String>,
        now: u64,
    ) -> Verified {
        let leeway = self.config.leeway.as_secs();
        if let Some(iat) = claims.get("iat") {
            match iat.as_u64() {
                Some(iat) if iat > now + leeway => {
                    return Verified::Refused(TokenError::Invalid(
                        "the token was issued in the future".into(),
                    ))
                }
                Some(_) => {}
                None => return Verified::Refused(TokenError::Invalid("malformed `iat` claim".into())),
            }
        }
        // `exp` is required and checked by jsonwebtoken.
        let exp = claims.get("exp").and_then(|e| e.as_u64()).unwrap_or(now);
        let claims = Arc::new(claims);
        self.cache.insert(cache_key, token.as_bytes(), claims.clone(), kid, exp.saturating_add(leeway), now);
        Verified::Claims(claims)
    }

    /// After a token named an unknown `kid`: fetches the keys again, at
    /// most once per [`REFETCH_EVERY`], and says whether the key is now
    /// known. Concurrent callers wait for the one fetch.
    pub async fn refetch_for(&self, kid: &str) -> bool {
        let _one_at_a_time = self.fetching.lock().await;
        if self.keys.load().as_ref().is_some_and(|k| k.has(kid)) {
            return true;
        }
        {
            let mut last = self.last_refetch.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < REFETCH_EVERY) {
                return false;
            }
            *last = Some(Instant::now());
        }
        self.fetch_now().await.is_ok() && self.keys.load().as_ref().is_some_and(|k| k.has(kid))
    }

    /// Fetches and installs the key set; on failure the last good set
    /// stays. The server's `max-age`, if any.
    async fn fetch_now(&self) -> Result<Option<Duration>, String> {
        let Some(fetcher) = &self.fetcher else { return Ok(None) };
        let fetched = fetcher.fetch().await?;
        let set = Arc::new(KeySet::from_jwks(&fetched.body)?);
        let kept = set.clone();
        self.cache.retain_keys(move |kid| kid.is_none_or(|k| kept.has(k)));
        self.keys.store(Some(set));
        Ok(fetched.max_age)
    }

    /// Starts refreshing a `jwks_url` in the background (once; the task
    /// ends when the provider is dropped, after a reload replaced it).
    pub fn start_refresh(self: &Arc<Self>) {
        if self.fetcher.is_none() || self.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(refresh(weak));
    }
}

async fn refresh(weak: Weak<Provider>) {
    let mut failures = 0u32;
    loop {
        let Some(p) = weak.upgrade() else { return };
        let wait = {
            let _one_at_a_time = p.fetching.lock().await;
            match p.fetch_now().await {
                Ok(max_age) => {
                    failures = 0;
                    let every = p.config.jwks_refresh;
                    max_age.map_or(every, |age| age.clamp(MIN_REFRESH, every))
                }
                Err(e) => {
                    failures += 1;
                    let url = p.fetcher.as_ref().map(|f| f.url().to_string()).unwrap_or_default();
                    tracing::warn!(provider = %p.name, %url, error = %e, "cannot fetch the JWKS; the last good keys stay in use");
                    // Soon while there are no keys at all, then every 30s.
                    let backoff = Duration::from_secs(1u64 << failures.min(5));
                    let cap = if p.has_keys() { REFETCH_EVERY } else { Duration::from_secs(10) };
                    backoff.min(cap).min(p.config.jwks_refresh)
                }
            }
        };
        drop(p);
        tokio::time::sleep(wait).await;
    }
}

/// jsonwebtoken's checks for one algorithm of a provider.
fn validation(config: &JwtProviderConfig, alg: JwtAlgorithm) -> Validation {
    let mut v = Validation::new(keys::algorithm(alg));
    v.leeway = config.leeway.as_secs();
    v.validate_nbf = true;
    v.required_spec_claims = HashSet::from(["exp".to_owned()]);
    if let Some(iss) = &config.issuer {
        v.set_issuer(&[iss]);
        v.required_spec_claims.insert("iss".into());
    }
    if config.audiences.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&config.audiences);
        v.required_spec_claims.insert("aud".into());
    }
    v
}

/// Why jsonwebtoken refused a token, for `error_description`.
fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::InvalidIssuer => "the token is from another issuer".into(),
        ErrorKind::InvalidAudience => "the token is for another audience".into(),
        ErrorKind::InvalidSignature => "the signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
        ErrorKind::InvalidClaimFormat(c) => format!("malformed `{c}` claim"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
            "the algorithm does not match the key".into()
        }
        ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            "the token is malformed".into()
        }
        _ => "the token is invalid".into(),
    }
}

/// The providers of a config, reusing those of `previous` that fetch their
/// keys (`jwks_url`) and whose configuration did not change: their keys
/// and cache are kept.
pub fn build_all(
    configs: &[JwtProviderConfig],
    previous: Option<&std::collections::BTreeMap<String, Arc<Provider>>>,
    metrics: impl Fn(&str) -> CacheMetrics,
    problems: &mut Vec<Problem>,
) -> std::collections::BTreeMap<String, Arc<Provider>> {
    let mut out = std::collections::BTreeMap::new();
    for c in configs {
        // A fetched key set is kept across a reload; files are read again
        // (a reload is how new keys on disk are taken up).
        let fetched = matches!(c.keys, JwtKeys::JwksUrl(_));
        if let Some(p) = previous.and_then(|p| p.get(&c.name)).filter(|p| fetched && p.config == *c) {
            out.insert(c.name.clone(), p.clone());
            continue;
        }
        match Provider::new(c, metrics(&c.name)) {
            Ok(p) => {
                out.insert(c.name.clone(), Arc::new(p));
            }
            Err(p) => problems.push(p),
        }
    }
    out
}
