//! iot-data SendDirectMessage on the emulator, through the real `aws-sdk-iotdataplane` client:
//! to one client without a subscription, with the MQTT 5 properties, confirmed by the client's
//! PUBACK; an unknown client is a 404 at once, a client that never acknowledges a 504 after the
//! timeout; no subscriber and no rule sees a direct message.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::{Duration, Instant};

use aws_sdk_iotdataplane::primitives::Blob;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tether_local_iot::link::Link;
use tether_local_iot::{Config, LocalIot};
use tether_testkit::iot::Clients;

async fn send(
    clients: &Clients,
    client_id: &str,
    confirmation: bool,
    timeout: i32,
) -> Result<(), String> {
    clients
        .data
        .send_direct_message()
        .client_id(client_id)
        .topic("tether/devices/pump-1/invoke/reboot/r-1")
        .response_topic("tether/replies/pump-1/r-1")
        .correlation_data("ci0x")
        .content_type("application/json")
        .payload(Blob::new(r#"{"force":true}"#))
        .confirmation(confirmation)
        .timeout(timeout)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            aws_sdk_iotdataplane::error::ProvideErrorMetadata::code(&e)
                .unwrap_or("no code")
                .to_owned()
        })
}

#[tokio::test]
async fn a_direct_message_reaches_one_unsubscribed_client_and_waits_for_its_puback() {
    let iot = LocalIot::start(Config::default()).await.unwrap();
    let clients = Clients::new(&iot.endpoint_url()).await;
    // The device subscribes to nothing; an observer subscribes to everything of Tether's.
    let (_device, mut device_rx) = Link::connect_as(iot.mqtt_addr(), "pump-1", &[])
        .await
        .unwrap();
    let (_observer, mut observer_rx) =
        Link::connect_as(iot.mqtt_addr(), "observer", &["tether/#".into()])
            .await
            .unwrap();

    send(&clients, "pump-1", true, 5).await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(5), device_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.topic, "tether/devices/pump-1/invoke/reboot/r-1");
    assert_eq!(&message.payload[..], br#"{"force":true}"#);
    assert_eq!(message.qos, rumqttc::v5::mqttbytes::QoS::AtLeastOnce);
    assert_eq!(
        message.properties.response_topic.as_deref(),
        Some("tether/replies/pump-1/r-1")
    );
    assert_eq!(
        message.properties.correlation_data.as_deref(),
        Some(&b"r-1"[..])
    );
    assert_eq!(
        message.properties.content_type.as_deref(),
        Some("application/json")
    );
    // Without confirmation: QoS 0, answered at once.
    send(&clients, "pump-1", false, 5).await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(5), device_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.qos, rumqttc::v5::mqttbytes::QoS::AtMostOnce);
    // Not routed: the observer saw neither.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        observer_rx.try_recv().is_err(),
        "a subscriber saw a direct message"
    );
    iot.shutdown().await;
}

#[tokio::test]
async fn an_unknown_client_is_refused_at_once_and_a_silent_one_times_out() {
    let iot = LocalIot::start(Config::default()).await.unwrap();
    let clients = Clients::new(&iot.endpoint_url()).await;
    let started = Instant::now();
    assert_eq!(
        send(&clients, "nobody", true, 5).await,
        Err("ResourceNotFoundException".into())
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused at once"
    );

    // A client that takes messages but never acknowledges them.
    let mut options = MqttOptions::new("mute-1", "127.0.0.1", iot.mqtt_addr().port());
    options.set_manual_acks(true);
    let (_client, mut eventloop) = AsyncClient::new(options, 10);
    let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
    let mut connected_tx = Some(connected_tx);
    let poller = tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::ConnAck(_)) = event {
                if let Some(tx) = connected_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    connected_rx.await.unwrap();
    let started = Instant::now();
    assert_eq!(
        send(&clients, "mute-1", true, 1).await,
        Err("GatewayTimeoutException".into())
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    // Bad input is refused before anything is sent.
    assert_eq!(
        send(&clients, "mute-1", true, 16).await,
        Err("InvalidRequestException".into())
    );
    poller.abort();
    iot.shutdown().await;
}
