//! Replies straight to the waiting `invoke` instance (`REPLY_INBOX`): the response topic names
//! the instance's inbox, the reply is recorded once, the instance's connection can be lost
//! between calls without a call going unanswered, and MQTT 3.1.1 devices (which answer on the
//! topic-derived reply topic) still get answered through the rule path.

use std::time::Duration;

use anyhow::{ensure, Context};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{json, Value};
use tether_stack::Stack;
use tokio::sync::mpsc;

use crate::common::{entries_with, Api};

fn broker(stack: &Stack) -> anyhow::Result<(String, u16)> {
    let addr = stack.endpoints.mqtt.trim_start_matches("mqtt://");
    let (host, port) = addr.rsplit_once(':').context("host:port")?;
    Ok((host.to_owned(), port.parse()?))
}

/// An MQTT 5 client subscribed to `filter`; the topics of what it receives come on the channel.
async fn spy(
    stack: &Stack,
    client_id: &str,
    filter: &str,
) -> anyhow::Result<(
    AsyncClient,
    mpsc::UnboundedReceiver<String>,
    tokio::task::JoinHandle<()>,
)> {
    let (host, port) = broker(stack)?;
    let (client, mut eventloop) = AsyncClient::new(MqttOptions::new(client_id, host, port), 10);
    client.subscribe(filter, QoS::AtLeastOnce).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let task = tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(ready) = ready_tx.take() {
                        let _ = ready.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let _ = tx.send(String::from_utf8_lossy(&p.topic).into_owned());
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx).await??;
    Ok((client, rx, task))
}

async fn call(api: &Api, device: &str) -> anyhow::Result<(u16, Value)> {
    api.send(
        "POST",
        &format!("/devices/{device}/invoke"),
        Some(json!({"method": "ping", "payload": {"n": 1}, "timeoutMs": 5000})),
        None,
    )
    .await
}

/// The reply topic the spy saw for request `id`.
async fn reply_topic(
    seen: &mut mpsc::UnboundedReceiver<String>,
    id: &str,
) -> anyhow::Result<String> {
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(topic) = seen.recv().await {
            if topic.split('/').nth(3) == Some(id) {
                return Ok(topic);
            }
        }
        anyhow::bail!("the spy stopped")
    })
    .await
    .context("no reply seen")?
}

pub async fn replies_reach_the_waiting_instance_and_are_recorded_once(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    let (_spy, mut seen, spy_task) = spy(stack, "reply-spy-1", "tether/replies/#").await?;

    // The response topic named an inbox, and the reply is in the record once.
    let (status, answered) = call(api, "dev-1").await?;
    ensure!(
        status == 200 && answered["status"] == "SUCCEEDED",
        "{answered}"
    );
    let id = answered["requestId"].as_str().context("requestId")?;
    let topic = reply_topic(&mut seen, id).await?;
    let inbox = topic
        .rsplit('/')
        .next()
        .filter(|level| level.starts_with("tether-invoke-"))
        .with_context(|| format!("the reply went to {topic}, not to an inbox"))?
        .to_owned();
    let (_, record) = api
        .send("GET", &format!("/invocations/{id}"), None, None)
        .await?;
    let finals = entries_with(&record, "SUCCEEDED");
    ensure!(record["status"] == "SUCCEEDED" && finals == 1, "{record}");
    // The rule path saw the same reply; give ingest time to try writing it again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, again) = api
        .send("GET", &format!("/invocations/{id}"), None, None)
        .await?;
    ensure!(
        again["timeline"] == record["timeline"],
        "ingest added to {again}"
    );
    // The inbox is a client of the broker, not a device.
    let (status, _) = api
        .send("GET", &format!("/devices/{inbox}"), None, None)
        .await?;
    ensure!(
        status == 404,
        "the inbox's presence was recorded as a device: {status}"
    );

    // The instance loses its connection between calls (another client takes its client id):
    // the next calls are answered all the same, by the rule path or the reconnected inbox.
    let (host, port) = broker(stack)?;
    let (thief, mut thief_loop) =
        AsyncClient::new(MqttOptions::new(inbox.as_str(), host, port), 10);
    let connected = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(event) = thief_loop.poll().await {
            if let Event::Incoming(Packet::ConnAck(_)) = event {
                return true;
            }
        }
        false
    })
    .await?;
    ensure!(connected, "could not take the inbox's client id");
    thief.disconnect().await?;
    let _ = tokio::time::timeout(Duration::from_secs(1), thief_loop.poll()).await;
    for _ in 0..3 {
        let (status, answered) = call(api, "dev-1").await?;
        ensure!(
            status == 200 && answered["status"] == "SUCCEEDED",
            "{answered}"
        );
    }
    // And an inbox is in use again (the local runtime may run more than one instance of
    // invoke, each with its own inbox).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, answered) = call(api, "dev-1").await?;
    ensure!(status == 200, "{answered}");
    let id = answered["requestId"].as_str().context("requestId")?;
    let topic = reply_topic(&mut seen, id).await?;
    ensure!(
        topic
            .rsplit('/')
            .next()
            .is_some_and(|level| level.starts_with("tether-invoke-")),
        "after the reconnection the reply went to {topic}"
    );
    spy_task.abort();
    Ok(())
}

pub async fn an_mqtt_3_device_answers_through_the_rule_path(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    // An MQTT 3.1.1 device: no response topic arrives, so it answers on the topic derived from
    // the request topic, which the rule carries to ingest.
    let (host, port) = broker(stack)?;
    let (device, mut eventloop) =
        rumqttc::AsyncClient::new(rumqttc::MqttOptions::new("legacy-1", host, port), 10);
    device
        .subscribe(
            "tether/devices/legacy-1/invoke/+/+",
            rumqttc::QoS::AtLeastOnce,
        )
        .await?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let answering = device.clone();
    let task = tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            match event {
                rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) => {
                    if let Some(ready) = ready_tx.take() {
                        let _ = ready.send(());
                    }
                }
                rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => {
                    let id = p.topic.rsplit('/').next().unwrap_or_default().to_owned();
                    let reply = json!({"status": "SUCCEEDED", "result": {"protocol": "3.1.1"}});
                    let _ = answering
                        .publish(
                            format!("tether/replies/legacy-1/{id}"),
                            rumqttc::QoS::AtLeastOnce,
                            false,
                            reply.to_string(),
                        )
                        .await;
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx).await??;
    let answered = call(api, "legacy-1").await;
    task.abort();
    let (status, answered) = answered?;
    ensure!(
        status == 200 && answered["result"]["protocol"] == "3.1.1",
        "{status} {answered}"
    );
    Ok(())
}

pub async fn a_device_says_it_is_working_then_answers(
    api: &Api,
    _stack: &Stack,
) -> anyhow::Result<()> {
    // `progress`: IN_PROGRESS (reason PROGRESS, 50%) at once, SUCCEEDED 300 ms later.
    let (status, answered) = api.invoke("dev-2", "progress", 5000).await?;
    ensure!(
        status == 200 && answered["status"] == "SUCCEEDED",
        "{answered}"
    );
    let id = answered["requestId"].as_str().context("requestId")?;
    // Give the rule path time to record the same messages again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, record) = api
        .send("GET", &format!("/invocations/{id}"), None, None)
        .await?;
    let count = |status: &str| entries_with(&record, status);
    ensure!(
        record["status"] == "SUCCEEDED" && count("IN_PROGRESS") == 1 && count("SUCCEEDED") == 1,
        "{record}"
    );
    let progress = record["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["status"] == "IN_PROGRESS")
        .context("IN_PROGRESS")?;
    ensure!(
        progress["source"] == "device"
            && progress["statusReason"]["reasonCode"] == "PROGRESS"
            && progress["statusReason"]["reasonDescription"] == "50%",
        "{progress}"
    );
    Ok(())
}
