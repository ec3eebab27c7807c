//! Makes a throwaway certificate authority and server certificates for the
//! TLS examples.
//!
//! ```text
//! cargo run --example make-certs -- examples/certs api.example.test "*.shop.example.test"
//! ```
//!
//! Writes `ca.pem` (trust it in your client), and for each name a
//! `<name>.pem` / `<name>-key.pem` pair (`*` is written as `wildcard`).
//! For local testing only.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: make-certs DIR NAME...")?);
    let names: Vec<String> = args.collect();
    if names.is_empty() {
        return Err("usage: make-certs DIR NAME...".into());
    }
    std::fs::create_dir_all(&dir)?;

    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "gatehouse example CA");
    ca_params.key_usages =
        vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    for name in names {
        let params = rcgen::CertificateParams::new(vec![name.clone()])?;
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let stem = name.replace('*', "wildcard");
        std::fs::write(dir.join(format!("{stem}.pem")), cert.pem())?;
        std::fs::write(dir.join(format!("{stem}-key.pem")), key.serialize_pem())?;
        println!("wrote {}/{stem}.pem and {stem}-key.pem", dir.display());
    }
    println!("wrote {}/ca.pem (trust it in your client)", dir.display());
    Ok(())
}
