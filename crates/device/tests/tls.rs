//! Mutual TLS, as with AWS IoT Core: a TLS front (rustls, client certificates required) in front
//! of the emulator's plain-TCP broker, with certificates made for the test.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::{emulator, json, next, observer, Invoke};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tether_device::config::numbered;
use tether_device::{BrokerUrl, Fleet, FleetConfig, FleetError, TlsFiles};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

struct Pki {
    dir: tempfile::TempDir,
    /// The device's certificate, key and the CA that signed the server certificate.
    device: TlsFiles,
    client_cert: CertificateDer<'static>,
    server_config: Arc<rustls::ServerConfig>,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Tether test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    server_params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "dev-tls-1");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

    let device = TlsFiles {
        cert: dir.path().join("device.cert.pem"),
        key: dir.path().join("device.private.key"),
        ca: dir.path().join("ca.pem"),
    };
    std::fs::write(&device.cert, client.pem()).unwrap();
    std::fs::write(&device.key, client_key.serialize_pem()).unwrap();
    std::fs::write(&device.ca, ca.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    Pki {
        dir,
        device,
        client_cert: client.der().clone(),
        server_config: Arc::new(server_config),
    }
}

/// Accepts TLS on a free 127.0.0.1 port, requires a client certificate, reports each client's
/// certificate, and relays the bytes to the broker.
async fn tls_front(
    config: Arc<rustls::ServerConfig>,
    broker: SocketAddr,
) -> (SocketAddr, mpsc::UnboundedReceiver<CertificateDer<'static>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (seen, clients) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                    let _ = seen.send(cert.clone().into_owned());
                }
                let Ok(mut upstream) = TcpStream::connect(broker).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (addr, clients)
}

fn tls_config(front: SocketAddr, files: TlsFiles) -> FleetConfig {
    let mut config = FleetConfig::new(
        BrokerUrl {
            host: front.ip().to_string(),
            port: front.port(),
            tls: true,
        },
        numbered("dev-tls-", 1).unwrap(),
    );
    config.tls = Some(files);
    config
}

#[tokio::test]
async fn a_device_with_a_certificate_connects_over_mutual_tls_and_answers() {
    let iot = emulator().await;
    let pki = pki();
    let (front, mut clients) = tls_front(pki.server_config.clone(), iot.mqtt_addr()).await;
    let (app, mut replies) = observer(&iot, "app-tls", &["tether/replies/dev-tls-1/+"]).await;

    let devices = Fleet::start(tls_config(front, pki.device.clone()))
        .await
        .unwrap();
    Invoke::new("dev-tls-1", "ping", "r-1", json!({"over": "tls"}))
        .send(&app)
        .await;
    let reply = next(&mut replies).await;
    let presented = tokio::time::timeout(common::WAIT, clients.recv())
        .await
        .unwrap()
        .unwrap();

    assert_eq!(
        presented, pki.client_cert,
        "the device presented its certificate"
    );
    assert_eq!(
        json(&reply),
        json!({"status": "SUCCEEDED", "result": {"over": "tls"}})
    );
    devices.shutdown().await;
    iot.shutdown().await;
    drop(pki.dir);
}

#[tokio::test]
async fn a_device_that_does_not_trust_the_server_never_becomes_ready() {
    let iot = emulator().await;
    let pki = pki();
    let other = rcgen::generate_simple_self_signed(vec!["someone-else".into()]).unwrap();
    let wrong_ca = pki.dir.path().join("wrong-ca.pem");
    std::fs::write(&wrong_ca, other.cert.pem()).unwrap();
    let (front, _clients) = tls_front(pki.server_config.clone(), iot.mqtt_addr()).await;
    let mut config = tls_config(
        front,
        TlsFiles {
            ca: wrong_ca,
            ..pki.device.clone()
        },
    );
    config.ready_timeout = Duration::from_millis(1500);

    let err = match Fleet::start(config).await {
        Ok(_) => panic!("the device trusted a server signed by another CA"),
        Err(err) => err,
    };

    let text = err.to_string();
    assert!(matches!(err, FleetError::NotReady { .. }), "{text}");
    assert!(
        text.contains("TLS"),
        "the state names the TLS failure: {text}"
    );
    iot.shutdown().await;
}
