//! Direct invocation with direct delivery (`DELIVERY=direct`, the template's default):
//! SendDirectMessage with confirmation, so the answer says whether the device got the request.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{json, Value};
use tether_stack::Stack;

use crate::common::Api;

fn statuses(record: &Value) -> Vec<String> {
    record["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["status"].as_str().map(str::to_owned))
        .collect()
}

/// A device's client (MQTT 5) that takes messages and, with `ack` false, never acknowledges
/// them; it runs until the returned task is aborted.
async fn raw_client(
    stack: &Stack,
    client_id: &str,
    ack: bool,
) -> anyhow::Result<(AsyncClient, tokio::task::JoinHandle<()>)> {
    let addr = stack
        .endpoints
        .mqtt
        .trim_start_matches("mqtt://")
        .to_owned();
    let (host, port) = addr.rsplit_once(':').context("host:port")?;
    let mut options = MqttOptions::new(client_id, host, port.parse()?);
    options.set_manual_acks(!ack);
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let task = tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::ConnAck(_)) = event {
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx).await??;
    Ok((client, task))
}

pub async fn each_answer_says_whether_the_device_got_the_request(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    // Answered: DELIVERED (the device's PUBACK) kept in the timeline, and the record final at
    // once. DELIVERED is dated when the confirmation came back, which may be after the answer
    // was recorded (the device acknowledges and answers at once).
    let (status, answered) = api.invoke("dev-1", "ping", 5000).await?;
    ensure!(
        status == 200 && answered["status"] == "SUCCEEDED",
        "{answered}"
    );
    let id = answered["requestId"].as_str().context("requestId")?;
    let (_, record) = api
        .send("GET", &format!("/invocations/{id}"), None, None)
        .await?;
    ensure!(
        record["status"] == "SUCCEEDED",
        "final right after the 200: {record}"
    );
    let mut seen = statuses(&record);
    seen.sort();
    ensure!(seen == ["DELIVERED", "PENDING", "SUCCEEDED"], "{record}");

    // A device that got the request and never answers.
    let (status, silent) = api.invoke("dev-2", "silent", 500).await?;
    ensure!(status == 504 && silent["delivered"] == true, "{silent}");

    // A client that takes the request but never acknowledges it: it did not get it, as far as
    // anyone can know.
    let (_mute, task) = raw_client(stack, "mute-1", false).await?;
    let (status, mute) = api.invoke("mute-1", "ping", 1500).await?;
    task.abort();
    ensure!(status == 504 && mute["delivered"] == false, "{mute}");
    let id = mute["requestId"].as_str().context("requestId")?;
    let (_, record) = api
        .send("GET", &format!("/invocations/{id}"), None, None)
        .await?;
    ensure!(
        !statuses(&record).contains(&"DELIVERED".to_owned()),
        "{record}"
    );

    // A device that was connected and is gone: 404 at once, whatever presence last said.
    let (client, task) = raw_client(stack, "leaving-1", true).await?;
    client.disconnect().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();
    let started = Instant::now();
    let (status, gone) = api.invoke("leaving-1", "ping", 20000).await?;
    ensure!(
        status == 404 && gone["code"] == "DEVICE_NOT_CONNECTED",
        "{status} {gone}"
    );
    ensure!(started.elapsed() < Duration::from_secs(5), "at once");
    Ok(())
}

pub async fn connect_timeout_waits_for_a_device_to_connect(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    let call = |device: &'static str, connect_ms: u64| async move {
        let path = format!("/devices/{device}/invoke");
        let body = json!({"method": "ping", "timeoutMs": 5000, "connectTimeoutMs": connect_ms});
        api.send("POST", &path, Some(body), None).await
    };
    // A device that connects a second after the call began: the call waits, then it is sent
    // and answered.
    let iot = stack.iot().context("local-iot")?;
    let joiner = tether_domain::DeviceId::parse("joiner-1")?;
    let mut behaviours = tether_device::Behaviours::default();
    behaviours.apply_rules(
        tether_stack::default_behaviours()
            .iter()
            .map(String::as_str),
    )?;
    let config = tether_device::FleetConfig::local(iot.mqtt_addr(), vec![joiner])
        .with_behaviours(behaviours);
    let started = Instant::now();
    let (answer, fleet) = tokio::join!(call("joiner-1", 4000), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tether_device::Fleet::start(config).await
    });
    let fleet = fleet?;
    let (status, answered) = answer?;
    let took = started.elapsed();
    fleet.shutdown().await;
    ensure!(
        status == 200 && answered["status"] == "SUCCEEDED",
        "{status} {answered}"
    );
    ensure!(
        took >= Duration::from_secs(1),
        "answered before the device connected: {took:?}"
    );

    // A device that never connects: a 404 when the wait ends, not before.
    let started = Instant::now();
    let (status, gone) = call("never-1", 1500).await?;
    let took = started.elapsed();
    ensure!(
        status == 404 && gone["code"] == "DEVICE_NOT_CONNECTED",
        "{status} {gone}"
    );
    ensure!(
        took >= Duration::from_millis(1200) && took < Duration::from_secs(4),
        "refused after {took:?}"
    );
    Ok(())
}
