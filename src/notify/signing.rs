//! The key gatehouse signs notifications with, and its certificate.
//!
//! Receivers verify an SNS message as they do AWS's: fetch the certificate
//! at `SigningCertURL` (served on the AWS listener), and check `Signature`
//! (SHA256withRSA, `SignatureVersion` 2) over the message's canonical text.
//! The key is made once (RSA 2048) and kept beside the queues, so the
//! certificate receivers cached stays valid across restarts.

use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine as _;

const KEY_FILE: &str = "sns-signing-key.pem";
const CERT_FILE: &str = "sns-signing-cert.pem";

pub struct Signer {
    key: KeyPair,
    certificate: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(RSA 2048)")
    }
}

impl Signer {
    /// The key and certificate kept in `dir`, made there if absent.
    pub fn load_or_create(dir: &Path) -> Result<Signer, String> {
        let (key_path, cert_path) = (dir.join(KEY_FILE), dir.join(CERT_FILE));
        if key_path.exists() && cert_path.exists() {
            let key_pem =
                std::fs::read_to_string(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
            let der =
                pem_body(&key_pem).ok_or_else(|| format!("{}: not a PEM private key", key_path.display()))?;
            let key = KeyPair::from_pkcs8(&der).map_err(|e| format!("{}: {e}", key_path.display()))?;
            let certificate =
                std::fs::read_to_string(&cert_path).map_err(|e| format!("{}: {e}", cert_path.display()))?;
            return Ok(Signer { key, certificate });
        }
        let (signer, key_pem) = Self::generate()?;
        write_private(&key_path, key_pem.as_bytes()).map_err(|e| format!("{}: {e}", key_path.display()))?;
        std::fs::write(&cert_path, &signer.certificate)
            .map_err(|e| format!("{}: {e}", cert_path.display()))?;
        Ok(signer)
    }

    /// A new key and its self-signed certificate (and the key's PEM).
    pub fn generate() -> Result<(Signer, String), String> {
        let key =
            KeyPair::generate(KeySize::Rsa2048).map_err(|e| format!("cannot make a signing key: {e}"))?;
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
            .map_err(|e| format!("cannot encode the signing key: {e}"))?;
        let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_ref().to_vec());
        let cert_key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
            .map_err(|e| format!("cannot load the signing key: {e}"))?;
        let mut params = rcgen::CertificateParams::new(vec!["sns.gatehouse.local".to_owned()])
            .map_err(|e| format!("cannot make the signing certificate: {e}"))?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "sns.gatehouse.local");
        params.not_after = rcgen::date_time_ymd(2099, 12, 31);
        let cert =
            params.self_signed(&cert_key).map_err(|e| format!("cannot make the signing certificate: {e}"))?;
        let key_pem = pem("PRIVATE KEY", der.as_ref());
        Ok((Signer { key, certificate: cert.pem() }, key_pem))
    }

    /// The certificate receivers verify with, in PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate
    }

    /// The base64 SHA256withRSA signature of `text`.
    pub fn sign(&self, text: &[u8]) -> String {
        let mut signature = vec![0; self.key.public_modulus_len()];
        match self.key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), text, &mut signature) {
            Ok(()) => base64::engine::general_purpose::STANDARD.encode(signature),
            // Signing with a valid key into a buffer of the modulus's size
            // does not fail; an unsigned message is still delivered.
            Err(_) => String::new(),
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_body(text: &str) -> Option<Vec<u8>> {
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body.trim()).ok()
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_the_certificates_key_and_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let first = Signer::load_or_create(dir.path()).unwrap();
        let again = Signer::load_or_create(dir.path()).unwrap();
        assert_eq!(first.certificate_pem(), again.certificate_pem());
        let sig = base64::engine::general_purpose::STANDARD.decode(again.sign(b"hello")).unwrap();
        let cert_der = pem_body(first.certificate_pem()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).unwrap();
        let spki = cert.public_key().subject_public_key.data.to_vec();
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            spki,
        );
        public.verify(b"hello", &sig).unwrap();
        assert!(public.verify(b"hellO", &sig).is_err());
    }
}
