//! `invoke`'s connections as deployed, over TLS to local endpoints behind TLS fronts whose CA
//! the process trusts through `SSL_CERT_FILE`, as a function trusts Amazon's roots: the
//! warm-up's requests through the SDK's HTTPS client (DynamoDB, iot-data), and the inbox — MQTT
//! over WebSocket with TLS, each connection presigned with SigV4 — to `local-iot`'s WebSocket
//! listener. The front reports the upgrade
//! request's line, so the test sees the presigned URL the inbox sent; a device's reply on the
//! inbox's response topic reaches the waiting call. (`local-iot` does not check the signature:
//! the URL's form is what is checked here, the signature's value by the unit test of the
//! presigner against a fixed time.)
//!
//! One test in its own binary: it sets `SSL_CERT_FILE` for the whole process.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use tether_adapters::iot::IotGateway;
use tether_domain::topics::InvokeTopics;
use tether_domain::{DeviceId, RequestId};
use tether_invoke::inbox::{Endpoint, Inbox, Presigner};
use tether_local_iot::link::{Link, Outgoing};
use tether_local_iot::{Config, LocalIot};
use tether_store::Store;
use tether_testkit::iot::sdk_config;
use tether_testkit::tls::{socket_of, Fronts};
use tether_testkit::LocalDynamo;

#[tokio::test]
async fn the_warm_up_and_a_presigned_wss_inbox_work_over_tls() {
    let scratch = std::env::temp_dir().join(format!("tether-inbox-wss-{}", std::process::id()));
    let mut fronts = Fronts::new(
        &scratch,
        std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"),
    )
    .unwrap();
    std::env::set_var("SSL_CERT_FILE", &fronts.bundle);
    let iot = LocalIot::start(Config::default()).await.unwrap();
    let (front, mut upgrades) = fronts.observed_front(iot.ws_addr().unwrap()).await.unwrap();

    // The warm-up over HTTPS: the SDK's client trusts the bundle and opens its connections.
    let dynamo = LocalDynamo::shared();
    let plain_store = dynamo.fresh_store().await;
    let https = |addr: std::net::SocketAddr| format!("https://{addr}");
    let dynamo_front = fronts
        .front(socket_of(dynamo.endpoint()).unwrap())
        .await
        .unwrap();
    let store = Store::new(
        aws_sdk_dynamodb::Client::new(&sdk_config(&https(dynamo_front)).await),
        plain_store.table(),
    );
    store.warm_up().await.unwrap();
    let iot_front = fronts
        .front(socket_of(&iot.endpoint_url()).unwrap())
        .await
        .unwrap();
    let gateway = IotGateway::new(aws_sdk_iotdataplane::Client::new(
        &sdk_config(&https(iot_front)).await,
    ));
    gateway.warm_up(true, "tether").await.unwrap();

    let signer = Presigner::new(
        "eu-west-1",
        SharedCredentialsProvider::new(Credentials::new(
            "AKIDLOCAL",
            "secret",
            Some("session-token".into()),
            None,
            "test",
        )),
    );
    let endpoint = Endpoint::parse(&format!("wss://127.0.0.1:{}/mqtt", front.port())).unwrap();
    let inbox = Inbox::open(
        &endpoint,
        Some(signer),
        InvokeTopics::default(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();

    let upgrade = tokio::time::timeout(Duration::from_secs(5), upgrades.recv())
        .await
        .unwrap()
        .unwrap();
    let (method, rest) = upgrade.split_once(' ').unwrap();
    assert_eq!(method, "GET");
    let target = rest.split(' ').next().unwrap();
    let (path, query) = target.split_once('?').unwrap();
    assert_eq!(path, "/mqtt");
    for part in [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Credential=AKIDLOCAL%2F",
        "%2Feu-west-1%2Fiotdevicegateway%2Faws4_request",
        "X-Amz-SignedHeaders=host",
        "X-Amz-Signature=",
    ] {
        assert!(query.contains(part), "{part} not in {query}");
    }
    assert!(
        query.ends_with("&X-Amz-Security-Token=session-token"),
        "{query}"
    );

    // A reply on the response topic the inbox hands out reaches the waiting call.
    let (id, device) = (RequestId::random(), DeviceId::parse("dev-1").unwrap());
    let mut listening = inbox
        .listen(&id, &device, Duration::from_secs(2))
        .await
        .expect("the inbox is connected");
    let topic = InvokeTopics::default().reply_to(&device, &id, listening.inbox());
    let (device_link, _) = Link::connect_as(iot.mqtt_addr(), "dev-1", &[])
        .await
        .unwrap();
    device_link
        .publish(Outgoing {
            topic,
            payload: br#"{"status":"SUCCEEDED"}"#.to_vec().into(),
            qos: 1,
            retain: false,
            properties: Default::default(),
        })
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), listening.reply())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, br#"{"status":"SUCCEEDED"}"#);
    let _ = std::fs::remove_dir_all(&scratch);
}
