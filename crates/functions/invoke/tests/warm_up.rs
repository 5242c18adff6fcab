//! `invoke`'s warm-up during init, against the local DynamoDB endpoint and `local-iot`: each
//! request succeeds (its "not found" is the expected answer), writes nothing and reaches no
//! device; an endpoint that is not there is an error, which init logs and goes on.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use tether_adapters::iot::{IotGateway, WARM_UP_CLIENT};
use tether_local_iot::link::Link;
use tether_local_iot::{Config, LocalIot};
use tether_testkit::iot::Clients;
use tether_testkit::LocalDynamo;

#[tokio::test]
async fn the_store_warm_up_reads_a_key_no_item_has_and_writes_nothing() {
    let dynamo = LocalDynamo::shared();
    let store = dynamo.fresh_store().await;
    store.warm_up().await.unwrap();
    let items = store
        .client()
        .scan()
        .table_name(store.table())
        .send()
        .await
        .unwrap();
    assert_eq!(items.count(), 0);

    // A table that is not there is an error (init logs it and goes on).
    let missing = tether_store::Store::new(dynamo.client().await, "no-such-table");
    assert!(missing.warm_up().await.is_err());
}

#[tokio::test]
async fn the_iot_data_warm_up_reaches_no_device_with_either_delivery() {
    let iot = LocalIot::start(Config::default()).await.unwrap();
    let clients = Clients::new(&iot.endpoint_url()).await;
    let gateway = IotGateway::new(clients.data.clone());
    // An observer of every request topic.
    let (_observer, mut seen) = Link::connect_as(iot.mqtt_addr(), "observer", &["tether/#".into()])
        .await
        .unwrap();

    // Direct: to a client that is never connected, so no one at all receives it.
    gateway.warm_up(true, "tether").await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), seen.recv())
            .await
            .is_err(),
        "a subscriber saw the direct warm-up"
    );
    // Publish: QoS 0 on that client's request topic, which only a wildcard observer sees.
    gateway.warm_up(false, "tether").await.unwrap();
    let published = tokio::time::timeout(Duration::from_secs(2), seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        published.topic,
        format!("tether/devices/{WARM_UP_CLIENT}/invoke/warm-up")
    );
    assert!(published.payload.is_empty());

    // Nothing listening: an error, not a hang.
    iot.shutdown().await;
    let offline = tokio::time::timeout(Duration::from_secs(30), gateway.warm_up(true, "tether"))
        .await
        .unwrap();
    assert!(offline.is_err());
}
