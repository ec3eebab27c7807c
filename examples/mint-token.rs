//! Mints a test token for `examples/jwt.yaml`, signed with the demo key in
//! `examples/jwt/` (RS256, key id `demo-1`). Demo keys protect nothing.
//!
//! ```text
//! cargo run --example mint-token -- --sub alice --scope orders:read
//! cargo run --example mint-token -- --sub bob --expires-in -60   # already expired
//! cargo run --example mint-token -- --jwks > examples/jwt/jwks.json
//! cargo run --example mint-token -- --count 10000 > tokens.txt   # user-1 … user-10000
//! ```
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const KEY: &str = include_str!("jwt/signing-key.pem");
const KID: &str = "demo-1";

#[derive(Parser)]
struct Args {
    /// The `sub` claim.
    #[arg(long, default_value = "alice")]
    sub: String,
    /// Space-separated scopes (the `scope` claim).
    #[arg(long, default_value = "")]
    scope: String,
    /// Seconds until `exp` (negative for an expired token).
    #[arg(long, default_value_t = 3600, allow_hyphen_values = true)]
    expires_in: i64,
    /// `iss`, as `examples/jwt.yaml` expects it.
    #[arg(long, default_value = "https://id.example.test/")]
    issuer: String,
    /// `aud`, as `examples/jwt.yaml` expects it.
    #[arg(long, default_value = "orders-api")]
    audience: String,
    /// Print the JWKS document of the demo key instead of a token.
    #[arg(long)]
    jwks: bool,
    /// Print this many tokens, one per line, for subjects `user-1`,
    /// `user-2`… (for load tests).
    #[arg(long)]
    count: Option<u32>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let key = EncodingKey::from_rsa_pem(KEY.as_bytes())?;
    if args.jwks {
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)?;
        jwk.common.key_id = Some(KID.into());
        println!("{}", serde_json::to_string_pretty(&JwkSet { keys: vec![jwk] })?);
        return Ok(());
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.into());
    let token = |sub: &str| {
        let claims = serde_json::json!({
            "iss": args.issuer,
            "aud": args.audience,
            "sub": sub,
            "scope": args.scope,
            "iat": now,
            "exp": now + args.expires_in,
        });
        jsonwebtoken::encode(&header, &claims, &key)
    };
    match args.count {
        None => println!("{}", token(&args.sub)?),
        Some(n) => {
            let mut out = String::new();
            for i in 1..=n {
                out.push_str(&token(&format!("user-{i}"))?);
                out.push('\n');
            }
            print!("{out}");
        }
    }
    Ok(())
}
