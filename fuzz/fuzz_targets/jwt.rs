//! JWT verification: never a panic, whatever the token; and a token is
//! accepted only if it is an HS256 JWS whose signature is the HMAC of its
//! first two parts under the provider's secret (checked here with the
//! `hmac` crate, independently of jsonwebtoken).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use gatehouse::config::{JwtAlgorithm, JwtKeys, JwtProviderConfig, KeyPath, Secret};
use gatehouse::middleware::auth::cache::CacheMetrics;
use gatehouse::middleware::auth::{token, Provider, Verified};
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;

/// The seeds' tokens are signed with this (see fuzz/seeds/jwt).
const SECRET: &str = "fuzzing-secret-fuzzing-secret-0123456789";

fn provider() -> &'static Provider {
    static P: OnceLock<Provider> = OnceLock::new();
    P.get_or_init(|| {
        let config = JwtProviderConfig {
            name: "fuzz".into(),
            issuer: None,
            audiences: Vec::new(),
            algorithms: vec![JwtAlgorithm::HS256],
            leeway: Duration::from_secs(60),
            keys: JwtKeys::Secret(Secret(SECRET.into())),
            jwks_refresh: Duration::from_secs(600),
            tls_ca: None,
            at: KeyPath::root(),
        };
        Provider::new(&config, CacheMetrics::default()).expect("a secret provider builds")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = token::check_header(s, &JwtAlgorithm::ALL);
    }
    if let Verified::Claims(_) = provider().verify(data) {
        let s = std::str::from_utf8(data).expect("an accepted token is text");
        let (message, signature) = s.rsplit_once('.').expect("three parts");
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(message.as_bytes());
        mac.verify_slice(&signature).unwrap_or_else(|_| panic!("accepted a token with a wrong signature: {s}"));
    }
});
