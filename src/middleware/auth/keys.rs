//! A provider's verification keys: from a JWKS document, a PEM public key
//! or an HMAC secret.

use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::JwtAlgorithm;

/// One verification key.
pub struct Key {
    pub kid: Option<String>,
    /// The algorithm the key is for, when its JWK says.
    pub alg: Option<Algorithm>,
    pub decoding: DecodingKey,
}

/// The keys a provider verifies with.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

/// jsonwebtoken's name for an algorithm of the allow-list.
pub fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

impl KeySet {
    /// The keys of a JWKS document (`{"keys": [...]}`). Keys for
    /// encryption and keys gatehouse cannot use are skipped; a document
    /// without one usable key is an error.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, String> {
        let doc: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let list = doc.get("keys").and_then(|k| k.as_array()).ok_or("not a JWKS document: no `keys` list")?;
        let mut keys = Vec::new();
        for item in list {
            let Ok(jwk) = serde_json::from_value::<Jwk>(item.clone()) else { continue };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let alg = match &jwk.common.key_algorithm {
                None => None,
                Some(a) => match format!("{a:?}").parse::<Algorithm>() {
                    Ok(a) => Some(a),
                    // A key for an algorithm that does not sign (RSA-OAEP...).
                    Err(_) => continue,
                },
            };
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else { continue };
            keys.push(Key { kid: jwk.common.key_id.clone(), alg, decoding });
        }
        if keys.is_empty() {
            return Err("the JWKS document has no usable signing key".into());
        }
        Ok(KeySet { keys })
    }

    /// One PEM public key (RSA, EC or Ed25519), for the algorithms allowed.
    pub fn from_pem(pem: &[u8], allowed: &[JwtAlgorithm]) -> Result<KeySet, String> {
        let mut keys = Vec::new();
        let rsa = allowed.iter().any(|a| a.name().starts_with('R') || a.name().starts_with('P'));
        let ec = allowed.iter().any(|a| a.name().starts_with("ES"));
        let ed = allowed.contains(&JwtAlgorithm::EdDSA);
        type Parse = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;
        let tries: [(bool, Parse); 3] = [
            (rsa, DecodingKey::from_rsa_pem),
            (ec, DecodingKey::from_ec_pem),
            (ed, DecodingKey::from_ed_pem),
        ];
        for (wanted, parse) in tries {
            if let (true, Ok(decoding)) = (wanted, parse(pem)) {
                keys.push(Key { kid: None, alg: None, decoding });
                break;
            }
        }
        if keys.is_empty() {
            return Err("not a PEM public key for the allowed algorithms".into());
        }
        Ok(KeySet { keys })
    }

    pub fn from_secret(secret: &str) -> Result<KeySet, String> {
        let decoding = DecodingKey::from_secret(secret.as_bytes()).map_err(|_| "the secret is empty")?;
        Ok(KeySet { keys: vec![Key { kid: None, alg: None, decoding }] })
    }

    /// Whether a key with this id is in the set.
    pub fn has(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The keys a token signed with `alg` may be checked against: the key
    /// its `kid` names, and keys without an id; without a `kid`, every key
    /// of the algorithm's kind.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys.iter().filter(move |k| {
            let id_matches = match (kid, k.kid.as_deref()) {
                (Some(wanted), Some(id)) => wanted == id,
                _ => true,
            };
            id_matches && k.alg.is_none_or(|a| a == alg) && k.decoding.family() == alg.family()
        })
    }
}
