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
use tether_adapters::iot::{DeviceRequest, DirectOutcome, IotGateway};
use tether_domain::topics::InvokeTopics;
use tether_domain::{DeviceId, RequestId};
use tether_invoke::inbox::{Endpoint, Inbox, Presigner};
use tether_local_iot::link::{Link, Outgoing};
use tether_local_iot::{Config, LocalIot};
use tether_store::Store;
use tether_testkit::tls::{socket_of, Fronts};
use tether_testkit::LocalDynamo;

/// How many connections a front has reported so far.
fn count(connections: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> usize {
    std::iter::from_fn(|| connections.try_recv().ok()).count()
}

#[tokio::test]
async fn the_warm_up_and_a_presigned_wss_inbox_work_over_tls() {
    let scratch = std::env::temp_dir().join(format!("tether-inbox-wss-{}", std::process::id()));
    let mut fronts = Fronts::new(
        &scratch,
        std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"),
    )
    .unwrap();
    // Before anything starts a thread: the trust store, and the functions' region and keys.
    for (name, value) in [
        ("SSL_CERT_FILE", fronts.bundle.to_str().unwrap()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
    ] {
        std::env::set_var(name, value);
    }
    let iot = LocalIot::start(Config::default()).await.unwrap();
    let (front, mut upgrades) = fronts.observed_front(iot.ws_addr().unwrap()).await.unwrap();

    // The warm-up over HTTPS: the SDK's client trusts the bundle and opens its connections.
    let dynamo = LocalDynamo::shared();
    let plain_store = dynamo.fresh_store().await;
    // The functions' own SDK configuration (its HTTPS client, timeouts and retries), with
    // the front as the endpoint.
    let functions_sdk = tether_adapters::aws::sdk_config().await;
    let https = |addr: std::net::SocketAddr| format!("https://{addr}");
    let (dynamo_front, mut dynamo_connections) = fronts
        .observed_front(socket_of(dynamo.endpoint()).unwrap())
        .await
        .unwrap();
    let store = Store::new(
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&functions_sdk)
                .endpoint_url(https(dynamo_front))
                .build(),
        ),
        plain_store.table(),
    );
    store.warm_up().await.unwrap();
    // A read of the hot path then goes over the connection the warm-up opened.
    let unknown = RequestId::random();
    assert!(store.invocation(&unknown).await.unwrap().is_none());
    assert_eq!(
        count(&mut dynamo_connections),
        1,
        "DynamoDB connections opened"
    );
    let (iot_front, mut iot_connections) = fronts
        .observed_front(socket_of(&iot.endpoint_url()).unwrap())
        .await
        .unwrap();
    let gateway = IotGateway::new(aws_sdk_iotdataplane::Client::from_conf(
        aws_sdk_iotdataplane::config::Builder::from(&functions_sdk)
            .endpoint_url(https(iot_front))
            .build(),
    ));
    gateway.warm_up(true, "tether").await.unwrap();
    // The hot path's confirmed send then goes over the connection the warm-up opened: one
    // connection in all, or the warm-up would have been for nothing.
    let (_pump, _pump_rx) = Link::connect_as(iot.mqtt_addr(), "pump-1", &[])
        .await
        .unwrap();
    let request = DeviceRequest {
        topic: "tether/devices/pump-1/invoke/ping/r-1".into(),
        payload: "{}".into(),
        response_topic: "tether/replies/pump-1/r-1".into(),
        correlation: "r-1".into(),
        expiry_s: 5,
    };
    let sent = gateway.send_direct("pump-1", &request, 5).await.unwrap();
    assert_eq!(sent, DirectOutcome::Delivered);
    assert_eq!(
        count(&mut iot_connections),
        1,
        "iot-data connections opened"
    );

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
