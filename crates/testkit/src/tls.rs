//! TLS in front of local endpoints, for the cold-start benchmark and the inbox's `wss` test: a
//! deployed function's first requests pay TCP and TLS handshakes (and the trust store's
//! loading) that the local stack's plain `http://` and `ws://` endpoints never ask for. A CA
//! made for the run signs a certificate for 127.0.0.1 and `localhost`; each front accepts TLS on
//! a free 127.0.0.1 port and relays the bytes to its endpoint; a process trusts the CA through
//! `SSL_CERT_FILE` (the system's bundle with the CA appended), as a deployed function trusts
//! Amazon's roots.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The run's CA, its server certificate, and the fronts started with them.
pub struct Fronts {
    acceptor: tokio_rustls::TlsAcceptor,
    /// The system's trust store with the run's CA appended: the functions' `SSL_CERT_FILE`.
    pub bundle: PathBuf,
    tasks: Vec<JoinHandle<()>>,
}

impl Fronts {
    /// Makes the CA and the certificate, and writes the bundle into `dir`: `system_bundle`
    /// (when the file exists) with the CA appended.
    pub fn new(dir: &Path, system_bundle: &Path) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Tether bench CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let cert = params.signed_by(&key, &ca, &ca_key)?;

        std::fs::create_dir_all(dir)?;
        let bundle = dir.join("ca-bundle.pem");
        // A machine without the system's bundle trusts the run's CA alone.
        let mut trusted = match std::fs::read_to_string(system_bundle) {
            Ok(system) => system,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => {
                return Err(err).with_context(|| format!("reading {}", system_bundle.display()))
            }
        };
        trusted.push('\n');
        trusted.push_str(&ca.pem());
        std::fs::write(&bundle, trusted)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )?;
        // HTTP/1.1 for the SDK's clients; the WebSocket upgrade is HTTP/1.1 too.
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            bundle,
            tasks: Vec::new(),
        })
    }

    /// Accepts TLS on a free 127.0.0.1 port and relays each connection to `target`; returns
    /// the port's address.
    pub async fn front(&mut self, target: SocketAddr) -> anyhow::Result<SocketAddr> {
        let (addr, _) = self.observed_front(target).await?;
        Ok(addr)
    }

    /// [`Fronts::front`], also reporting the first line each client sends after the
    /// handshake (for HTTP, the request line: a WebSocket upgrade's presigned URL), as far as
    /// the first read holds it.
    pub async fn observed_front(
        &mut self,
        target: SocketAddr,
    ) -> anyhow::Result<(SocketAddr, mpsc::UnboundedReceiver<String>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = self.acceptor.clone();
        let (seen, lines) = mpsc::unbounded_channel();
        self.tasks.push(tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = upstream.set_nodelay(true);
                    let mut first = vec![0; 16 * 1024];
                    let Ok(read) = tls.read(&mut first).await else {
                        return;
                    };
                    let text = String::from_utf8_lossy(&first[..read]);
                    let _ = seen.send(text.lines().next().unwrap_or_default().to_owned());
                    if upstream.write_all(&first[..read]).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        }));
        Ok((addr, lines))
    }
}

impl Drop for Fronts {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The `host:port` of an `http://` or `ws://` URL of the local stack.
pub fn socket_of(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .context("not a URL")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .parse()
        .with_context(|| format!("{authority} is not an address"))
}
