//! The rustls client configuration for mutual TLS with AWS IoT Core.
//!
//! The crypto provider is passed explicitly (ring) instead of relying on a process-wide
//! default: the workspace has both ring and aws-lc-rs in its dependency graph, and with both
//! compiled in rustls refuses to pick one by itself (`ClientConfig::builder()` panics).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::config::TlsFiles;

/// ALPN protocol AWS IoT Core expects for MQTT with X.509 certificates on port 443.
pub const AWS_IOT_ALPN_443: &[u8] = b"x-amzn-mqtt-ca";

/// Why the TLS configuration could not be built; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the {what} {path} is not valid PEM: {source}")]
    Pem {
        what: &'static str,
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the {what} {path} holds no {expected}")]
    Empty {
        what: &'static str,
        path: String,
        expected: &'static str,
    },
    #[error("the CA file {path} holds a certificate rustls cannot use: {source}")]
    BadCa {
        path: String,
        #[source]
        source: rustls::Error,
    },
    #[error("the certificate {cert} and key {key} cannot be used together: {source}")]
    BadIdentity {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS protocol setup: {0}")]
    Protocol(#[source] rustls::Error),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what,
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.display().to_string(),
            expected: "PEM certificate (-----BEGIN CERTIFICATE-----)",
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const WHAT: &str = "private key";
    let pem = read(WHAT, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: WHAT,
            path: path.display().to_string(),
            expected: "PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)",
        },
        source => TlsError::Pem {
            what: WHAT,
            path: path.display().to_string(),
            source,
        },
    })
}

/// A client configuration that trusts only the CA file and presents the device certificate.
/// `alpn` is set for port 443 ([`AWS_IOT_ALPN_443`]); port 8883 needs none.
pub fn client_config(files: &TlsFiles, alpn: Option<&[u8]>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates("CA file", &files.ca)? {
        roots.add(ca).map_err(|source| TlsError::BadCa {
            path: files.ca.display().to_string(),
            source,
        })?;
    }
    let chain = certificates("certificate", &files.cert)?;
    let key = private_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocol)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|source| TlsError::BadIdentity {
            cert: files.cert.display().to_string(),
            key: files.key.display().to_string(),
            source,
        })?;
    if let Some(alpn) = alpn {
        config.alpn_protocols = vec![alpn.to_vec()];
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pems {
        dir: tempfile::TempDir,
        files: TlsFiles,
    }

    /// A self-signed certificate and its key, written as PEM files (the certificate is its own CA).
    fn self_signed() -> Pems {
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["dev-1".into()]).unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            ca: dir.path().join("ca.pem"),
        };
        std::fs::write(&files.cert, certified.cert.pem()).unwrap();
        std::fs::write(&files.ca, certified.cert.pem()).unwrap();
        std::fs::write(&files.key, certified.key_pair.serialize_pem()).unwrap();
        Pems { dir, files }
    }

    #[test]
    fn pem_files_make_a_client_config_with_a_client_certificate() {
        let pems = self_signed();

        let config = client_config(&pems.files, None).unwrap();
        let with_alpn = client_config(&pems.files, Some(AWS_IOT_ALPN_443)).unwrap();

        assert!(config.client_auth_cert_resolver.has_certs());
        assert!(config.alpn_protocols.is_empty());
        assert_eq!(with_alpn.alpn_protocols, vec![b"x-amzn-mqtt-ca".to_vec()]);
    }

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let pems = self_signed();
        let files = TlsFiles {
            key: pems.dir.path().join("missing-key.pem"),
            ..pems.files.clone()
        };

        let err = client_config(&files, None).unwrap_err().to_string();

        assert!(
            err.starts_with("reading the private key ") && err.contains("missing-key.pem"),
            "{err}"
        );
    }

    #[test]
    fn a_file_of_the_wrong_kind_is_refused_with_what_was_expected() {
        let pems = self_signed();
        let swapped = TlsFiles {
            key: pems.files.cert.clone(),
            ..pems.files.clone()
        };
        let garbage = pems.dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let no_ca = TlsFiles {
            ca: garbage,
            ..pems.files.clone()
        };

        let key_err = client_config(&swapped, None).unwrap_err().to_string();
        let ca_err = client_config(&no_ca, None).unwrap_err().to_string();

        assert!(key_err.contains("holds no PEM private key"), "{key_err}");
        assert!(
            ca_err.contains("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
            "{ca_err}"
        );
    }
}
