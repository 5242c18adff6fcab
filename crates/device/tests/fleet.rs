//! Many devices in one process, connections that drop and come back, and readiness.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::{emulator, fleet, json, next, numbered_fleet, observer, Invoke, WAIT};
use serde_json::json;
use tether_device::config::numbered;
use tether_device::{Behaviours, Fleet, FleetConfig, FleetError, Kind};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_devices_connect_and_each_answers_its_own_request() {
    const DEVICES: usize = 200;
    let iot = emulator().await;
    let devices = numbered_fleet(&iot, "sim-", DEVICES, &["*=echo"]).await;
    let (app, mut replies) = observer(&iot, "app-200", &["tether/replies/+/+"]).await;

    for n in 1..=DEVICES {
        let (device, request_id) = (format!("sim-{n}"), format!("r-{n}"));
        Invoke::new(&device, "whoami", &request_id, json!({"n": n}))
            .send(&app)
            .await;
    }
    let mut answers = BTreeMap::new();
    while answers.len() < DEVICES {
        let reply = next(&mut replies).await;
        let correlation =
            String::from_utf8(reply.properties.correlation_data.clone().unwrap().to_vec()).unwrap();
        assert!(
            answers
                .insert(correlation, (reply.topic.clone(), json(&reply)))
                .is_none(),
            "one reply per request"
        );
    }
    let summary = devices
        .wait_until(WAIT, |s| {
            s.total.sent(Kind::Invoke, "SUCCEEDED") == DEVICES as u64
        })
        .await
        .unwrap();

    for n in 1..=DEVICES {
        let (topic, body) = &answers[&format!("r-{n}")];
        assert_eq!(topic, &format!("tether/replies/sim-{n}/r-{n}"));
        assert_eq!(body, &json!({"status": "SUCCEEDED", "result": {"n": n}}));
        let own = &summary.per_device[&format!("sim-{n}")];
        assert_eq!(
            own.invoke.received, 1,
            "sim-{n} got exactly its own request"
        );
        assert_eq!(own.sent(Kind::Invoke, "SUCCEEDED"), 1);
        assert_eq!(own.connection.connects, 1);
    }
    assert_eq!(summary.devices, DEVICES);
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn disconnect_drops_the_connection_and_the_device_comes_back_subscribed() {
    let iot = emulator().await;
    let (_watch, mut presence) = observer(&iot, "watch-p", &["$aws/events/presence/+/dev-1"]).await;
    let devices = fleet(&iot, &["dev-1"], &["reboot=disconnect:200", "*=echo"]).await;
    let connected = next(&mut presence).await;
    let (app, mut replies) = observer(&iot, "app-1", &["tether/replies/dev-1/+"]).await;

    Invoke::new("dev-1", "reboot", "r-1", json!({}))
        .send(&app)
        .await;
    let gone = next(&mut presence).await;
    let back = next(&mut presence).await;
    devices
        .wait_until(WAIT, |s| s.total.connection.connects == 2)
        .await
        .unwrap();
    devices.wait_ready(WAIT).await.unwrap();
    Invoke::new("dev-1", "ping", "r-2", json!({"after": "reconnect"}))
        .send(&app)
        .await;
    let reply = next(&mut replies).await;

    assert_eq!(connected.topic, "$aws/events/presence/connected/dev-1");
    assert_eq!(gone.topic, "$aws/events/presence/disconnected/dev-1");
    assert_eq!(
        json(&gone)["clientInitiatedDisconnect"],
        false,
        "the connection was dropped, not closed with DISCONNECT"
    );
    assert_eq!(back.topic, "$aws/events/presence/connected/dev-1");
    assert_eq!(
        reply.topic, "tether/replies/dev-1/r-2",
        "no reply to the dropped request; the one after the reconnection is answered"
    );
    assert_eq!(
        json(&reply),
        json!({"status": "SUCCEEDED", "result": {"after": "reconnect"}})
    );
    let summary = devices.summary();
    assert_eq!(summary.total.connection.dropped, 1);
    assert_eq!(summary.total.invoke.unanswered, 1);
    devices.shutdown().await;
    iot.shutdown().await;
}

/// A TCP relay to the broker whose open connections are all cut when `cut` is sent, like a
/// network failure: neither side says goodbye.
async fn relay(broker: SocketAddr) -> (SocketAddr, broadcast::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (cut, _) = broadcast::channel(4);
    let cuts = cut.clone();
    tokio::spawn(async move {
        while let Ok((mut device, _)) = listener.accept().await {
            let mut cut = cuts.subscribe();
            tokio::spawn(async move {
                let Ok(mut upstream) = TcpStream::connect(broker).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut device, &mut upstream) => {}
                    _ = cut.recv() => {}
                }
            });
        }
    });
    (addr, cut)
}

#[tokio::test]
async fn a_device_whose_connection_breaks_reconnects_and_subscribes_again() {
    let iot = emulator().await;
    let (through, cut) = relay(iot.mqtt_addr()).await;
    let (_watch, mut presence) = observer(&iot, "watch-r", &["$aws/events/presence/+/dev-1"]).await;
    let devices = Fleet::start(
        FleetConfig::local(through, numbered("dev-", 1).unwrap())
            .with_behaviours(Behaviours::default()),
    )
    .await
    .unwrap();
    next(&mut presence).await;
    let (app, mut replies) = observer(&iot, "app-r", &["tether/replies/dev-1/+"]).await;

    cut.send(()).unwrap();
    let lost = next(&mut presence).await;
    let back = next(&mut presence).await;
    let summary = devices
        .wait_until(WAIT, |s| s.total.connection.connects == 2)
        .await
        .unwrap();
    devices.wait_ready(WAIT).await.unwrap();
    Invoke::new("dev-1", "ping", "r-after", json!({}))
        .send(&app)
        .await;
    let reply = next(&mut replies).await;

    assert_eq!(lost.topic, "$aws/events/presence/disconnected/dev-1");
    assert_eq!(json(&lost)["clientInitiatedDisconnect"], false);
    assert_eq!(back.topic, "$aws/events/presence/connected/dev-1");
    assert!(summary.total.connection.errors >= 1, "{summary:?}");
    assert_eq!(summary.total.connection.dropped, 0, "not a deliberate drop");
    assert_eq!(reply.topic, "tether/replies/dev-1/r-after");
    devices.shutdown().await;
    iot.shutdown().await;
}

#[tokio::test]
async fn shutdown_says_goodbye_with_a_clean_disconnect_and_returns_the_counts() {
    let iot = emulator().await;
    let (_watch, mut presence) = observer(&iot, "watch-q", &["$aws/events/presence/+/dev-9"]).await;
    let devices = fleet(&iot, &["dev-9"], &[]).await;
    next(&mut presence).await;
    let (app, mut replies) = observer(&iot, "app-9", &["tether/replies/dev-9/+"]).await;
    Invoke::new("dev-9", "ping", "r-1", json!({}))
        .send(&app)
        .await;
    next(&mut replies).await;
    devices
        .wait_until(WAIT, |s| s.total.sent(Kind::Invoke, "SUCCEEDED") == 1)
        .await
        .unwrap();

    let summary = devices.shutdown().await;
    let gone = next(&mut presence).await;

    assert_eq!(gone.topic, "$aws/events/presence/disconnected/dev-9");
    assert_eq!(json(&gone)["clientInitiatedDisconnect"], true);
    assert_eq!(summary.total.invoke.received, 1);
    assert!(
        summary.to_string().contains("replies sent 1 (SUCCEEDED 1)"),
        "{summary}"
    );
    iot.shutdown().await;
}

#[tokio::test]
async fn start_fails_with_where_the_device_stood_when_no_broker_listens() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut config = FleetConfig::local(port, numbered("dev-", 2).unwrap());
    config.ready_timeout = Duration::from_millis(800);

    let err = match Fleet::start(config).await {
        Ok(_) => panic!("no broker, yet the fleet started"),
        Err(err) => err,
    };

    assert!(
        matches!(
            err,
            FleetError::NotReady {
                devices: 2,
                not_ready: 2,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("2 of 2 devices were not connected and subscribed within 800ms; dev-1 is"),
        "{text}"
    );
}
