//! rustls configurations: the gateway's server side (certificates chosen by
//! SNI, optional client certificates, TLS 1.2 and 1.3 only, ALPN) and the
//! client side used towards `https://` upstreams.
//!
//! Server configurations are built from [`TlsConfig`] and published through
//! a [`ReloadableServerConfig`], so SIGHUP can swap certificates while
//! connections keep the configuration they were accepted with.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{HostPattern, KeyPath, Problem, TlsConfig, TlsVersion};

/// The one crypto provider gatehouse uses (ring), never the process default,
/// so behaviour does not depend on which other crates enabled which backend.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// ALPN protocols offered by the gateway, most preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Builds a server configuration, reading every file it names. Problems name
/// the config key of the file at fault.
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, Vec<Problem>> {
    let provider = provider();
    let mut problems = Vec::new();
    let mut certs = Vec::new();
    for c in &cfg.certificates {
        match certified_key(&c.cert, &c.key_file, &provider) {
            Ok(key) => certs.push(SniCert { hosts: c.hosts.clone(), key: Arc::new(key) }),
            Err(e) => problems.push(Problem::at_value(c.key.clone(), e)),
        }
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = match ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)
    {
        Ok(b) => b,
        Err(e) => {
            problems.push(Problem::at_value(cfg.key.clone(), format!("TLS setup failed: {e}")));
            return Err(problems);
        }
    };
    let builder = match &cfg.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => match client_verifier(ca, cfg.client_auth_optional, &provider) {
            Ok(v) => builder.with_client_cert_verifier(v),
            Err(e) => {
                problems.push(Problem::at_value(cfg.key.key("client_ca"), e));
                return Err(problems);
            }
        },
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver { certs }));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    match rustls::crypto::ring::Ticketer::new() {
        Ok(t) => config.ticketer = t,
        Err(e) => tracing::warn!(error = %e, "TLS session tickets unavailable"),
    }
    Ok(Arc::new(config))
}

fn certified_key(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read certificates from `{}`: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("`{}` holds no PEM certificate", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from `{}`: {e}", key.display()))?;
    CertifiedKey::from_der(chain, der, provider)
        .map_err(|e| format!("`{}` and `{}` do not form a usable pair: {e}", cert.display(), key.display()))
}

fn client_verifier(
    ca: &Path,
    optional: bool,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read `{}`: {e}", ca.display()))?;
    for c in certs {
        roots.add(c).map_err(|e| format!("bad CA certificate in `{}`: {e}", ca.display()))?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if optional {
        builder = builder.allow_unauthenticated();
    }
    builder.build().map_err(|e| format!("cannot use `{}` as a client CA: {e}", ca.display()))
}

struct SniCert {
    hosts: Vec<HostPattern>,
    key: Arc<CertifiedKey>,
}

/// Picks the certificate whose `hosts` match the SNI name: an exact name
/// first, then the longest wildcard, then the first certificate.
struct SniResolver {
    certs: Vec<SniCert>,
}

impl SniResolver {
    fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = name {
            let name = name.to_ascii_lowercase();
            let exact = self
                .certs
                .iter()
                .find(|c| c.hosts.iter().any(|h| matches!(h, HostPattern::Exact(_)) && h.matches(&name)));
            if let Some(c) = exact {
                return Some(c.key.clone());
            }
            let wildcard = self
                .certs
                .iter()
                .flat_map(|c| c.hosts.iter().map(move |h| (h, c)))
                .filter(|(h, _)| matches!(h, HostPattern::Suffix(_)) && h.matches(&name))
                .max_by_key(|(h, _)| h.to_string().len());
            if let Some((_, c)) = wildcard {
                return Some(c.key.clone());
            }
        }
        self.certs.first().map(|c| c.key.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver").field("certificates", &self.certs.len()).finish()
    }
}

/// A server configuration that can be replaced while serving.
#[derive(Clone)]
pub struct ReloadableServerConfig {
    current: Arc<ArcSwap<ServerConfig>>,
}

impl ReloadableServerConfig {
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self { current: Arc::new(ArcSwap::new(config)) }
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    pub fn replace(&self, config: Arc<ServerConfig>) {
        self.current.store(config);
    }
}

/// Client configuration for `https://` upstreams: the system's roots, plus
/// `extra_ca` when given. ALPN is left to the connector.
pub fn client_config(extra_ca: Option<&Path>, key: &KeyPath) -> Result<rustls::ClientConfig, Problem> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A malformed system certificate should not stop the gateway.
        let _ = roots.add(cert);
    }
    if let Some(ca) = extra_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| Problem::at_value(key.clone(), format!("cannot read `{}`: {e}", ca.display())))?;
        for c in certs {
            roots.add(c).map_err(|e| {
                Problem::at_value(key.clone(), format!("bad CA certificate in `{}`: {e}", ca.display()))
            })?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Problem::at_value(key.clone(), format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_for(name: &str) -> Arc<CertifiedKey> {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let der = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        Arc::new(CertifiedKey::from_der(vec![ck.cert.der().clone()], der, &provider()).unwrap())
    }

    #[test]
    fn sni_prefers_exact_then_longest_wildcard_then_default() {
        let default = key_for("default.test");
        let exact = key_for("api.example.com");
        let wild = key_for("*.example.com");
        let wild_eu = key_for("*.eu.example.com");
        let r = SniResolver {
            certs: vec![
                SniCert { hosts: vec![], key: default.clone() },
                SniCert { hosts: vec![HostPattern::parse("*.example.com").unwrap()], key: wild.clone() },
                SniCert {
                    hosts: vec![HostPattern::parse("*.eu.example.com").unwrap()],
                    key: wild_eu.clone(),
                },
                SniCert { hosts: vec![HostPattern::parse("api.example.com").unwrap()], key: exact.clone() },
            ],
        };
        assert!(Arc::ptr_eq(&r.pick(Some("API.example.com")).unwrap(), &exact));
        assert!(Arc::ptr_eq(&r.pick(Some("web.example.com")).unwrap(), &wild));
        assert!(Arc::ptr_eq(&r.pick(Some("x.eu.example.com")).unwrap(), &wild_eu));
        assert!(Arc::ptr_eq(&r.pick(Some("other.org")).unwrap(), &default));
        assert!(Arc::ptr_eq(&r.pick(None).unwrap(), &default));
    }
}
