//! Synchronous invocation through the local stack: end-to-end latency and throughput, the
//! hops the architecture cannot avoid, the blog sample's connect-per-call baseline, and the
//! precision of the deadline.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use tether_domain::topics::InvokeTopics;
use tether_domain::{DeviceId, MethodName, RequestId};

use crate::mqtt;
use crate::stats::{ms, percentile};
use crate::Env;

/// What one batch of calls measured.
#[derive(Debug, Default)]
pub struct Batch {
    /// Latencies of the calls that got the expected answer, in ms.
    pub latencies: Vec<f64>,
    pub errors: usize,
    pub wall: Duration,
}

impl Batch {
    pub fn p(&self, p: f64) -> f64 {
        percentile(&self.latencies, p).unwrap_or(f64::NAN)
    }

    /// Answered calls per second.
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

fn device(n: usize) -> String {
    format!("dev-{}", n + 1)
}

/// One `POST /devices/{device}/invoke`; the HTTP status and the latency.
async fn invoke(
    env: &Env,
    device: &str,
    method: &str,
    timeout_ms: u64,
) -> anyhow::Result<(u16, Duration)> {
    let started = Instant::now();
    let response = env
        .http
        .post(format!("{}/devices/{device}/invoke", env.api))
        .json(&json!({"method": method, "payload": {"n": 1}, "timeoutMs": timeout_ms}))
        .send()
        .await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await?;
    let elapsed = started.elapsed();
    if status == 200 {
        ensure!(body["status"] == "SUCCEEDED", "unexpected answer {body}");
    }
    Ok((status, elapsed))
}

/// `calls` invocations of an answering method, `concurrency` at a time, spread over the devices.
pub async fn end_to_end(env: &Env, calls: usize, concurrency: usize) -> Batch {
    let started = Instant::now();
    let results: Vec<anyhow::Result<(u16, Duration)>> = stream::iter(0..calls)
        .map(|i| async move { invoke(env, &device(i % env.devices), "ping", 5000).await })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut batch = Batch {
        wall: started.elapsed(),
        ..Batch::default()
    };
    for result in results {
        match result {
            Ok((200, latency)) => batch.latencies.push(ms(latency)),
            _ => batch.errors += 1,
        }
    }
    batch
}

/// What the load run saw: every call's answer checked against what that caller sent.
#[derive(Debug, Default)]
pub struct Load {
    pub batch: Batch,
    /// Answers that were 200 but carried another call's payload or another device's id.
    pub cross_talk: usize,
}

/// `calls` invocations all in flight at once over the devices, each with a payload of its own;
/// an answer counts only if it echoes that payload from that device.
pub async fn load(env: &Env, calls: usize) -> Load {
    let started = Instant::now();
    let outcomes: Vec<anyhow::Result<(bool, Duration)>> = stream::iter(0..calls)
        .map(|i| async move {
            let device = device(i % env.devices);
            let payload = json!({"call": i, "device": device});
            let began = Instant::now();
            let response = env
                .http
                .post(format!("{}/devices/{device}/invoke", env.api))
                .json(&json!({"method": "ping", "payload": payload, "timeoutMs": 25000}))
                .send()
                .await?;
            ensure!(response.status() == 200, "HTTP {}", response.status());
            let body: Value = response.json().await?;
            let own = body["status"] == "SUCCEEDED"
                && body["deviceId"] == device.as_str()
                && body["result"] == payload;
            Ok((own, began.elapsed()))
        })
        .buffer_unordered(calls)
        .collect()
        .await;
    let mut load = Load::default();
    for outcome in outcomes {
        match outcome {
            Ok((true, latency)) => load.batch.latencies.push(ms(latency)),
            Ok((false, _)) => load.cross_talk += 1,
            Err(_) => load.batch.errors += 1,
        }
    }
    load.batch.wall = started.elapsed();
    load
}

/// Devices that never answer: how long after `timeout_ms` each 504 arrives, in ms.
pub async fn deadline(env: &Env, timeout_ms: u64, calls: usize) -> anyhow::Result<Vec<f64>> {
    let results: Vec<anyhow::Result<(u16, Duration)>> = stream::iter(0..calls)
        .map(|i| async move { invoke(env, &device(i % env.devices), "silent", timeout_ms).await })
        // One at a time: locally, concurrent calls can queue behind a busy `cargo lambda
        // watch` instance, which measures the emulator's scheduling, not the deadline.
        .buffer_unordered(1)
        .collect()
        .await;
    let mut late = Vec::with_capacity(calls);
    for result in results {
        let (status, elapsed) = result?;
        ensure!(status == 504, "a silent device gave {status}");
        late.push(ms(elapsed) - timeout_ms as f64);
    }
    Ok(late)
}

/// The hops of one invocation, each measured alone, `samples` times; p50 of each, in ms.
/// The hops only the rule path takes (a reply through the rule into ingest, the record read).
pub const RULE_PATH_HOPS: [&str; 2] = [
    "rule delivery into ingest (Invoke API)",
    "DynamoDB consistent read",
];

pub async fn hops(env: &Env, samples: usize) -> anyhow::Result<Vec<(&'static str, f64)>> {
    let mut found = Vec::new();
    found.push((
        "HTTP into a function (cargo lambda watch)",
        p50(&http_hop(env, samples).await?),
    ));
    found.push((
        "iot-data SendDirectMessage, confirmed (device PUBACK)",
        p50(&direct_hop(env, samples).await?),
    ));
    found.push((
        "MQTT round trip to the device",
        p50(&mqtt_round_trip(env, samples).await?),
    ));
    found.push((
        "rule delivery into ingest (Invoke API)",
        p50(&ingest_delivery(env, samples).await?),
    ));
    let (write, read) = dynamo_hops(env, samples).await?;
    found.push(("DynamoDB conditional write", p50(&write)));
    found.push(("DynamoDB consistent read", p50(&read)));
    Ok(found)
}

/// HTTP into a function and back: a request the status function refuses before any I/O.
async fn http_hop(env: &Env, samples: usize) -> anyhow::Result<Vec<f64>> {
    let mut http = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let response = env
            .http
            .get(format!("{}/devices/bad$id", env.api))
            .send()
            .await?;
        ensure!(
            response.status() == 400,
            "expected a 400, got {}",
            response.status()
        );
        response.bytes().await?;
        http.push(ms(started.elapsed()));
    }
    Ok(http)
}

/// iot-data SendDirectMessage with confirmation to a device: the send `invoke` makes (the HTTP
/// call, the delivery and the device's PUBACK). The device's answer goes to a topic no rule
/// reads.
async fn direct_hop(env: &Env, samples: usize) -> anyhow::Result<Vec<f64>> {
    let mut sent = Vec::with_capacity(samples);
    for _ in 0..samples {
        let id = RequestId::random();
        let started = Instant::now();
        env.iot_data
            .send_direct_message()
            .client_id("dev-1")
            .topic(format!("tether/devices/dev-1/invoke/ping/{id}"))
            .response_topic(format!("bench/hop/direct/{id}"))
            .payload(aws_sdk_iotdataplane::primitives::Blob::new(
                &b"{\"n\":1}"[..],
            ))
            .confirmation(true)
            .timeout(5)
            .send()
            .await
            .context("iot-data SendDirectMessage")?;
        sent.push(ms(started.elapsed()));
    }
    Ok(sent)
}

/// MQTT round trip: request to a device, its answer on the response topic.
async fn mqtt_round_trip(env: &Env, samples: usize) -> anyhow::Result<Vec<f64>> {
    let topics = InvokeTopics::new("tether")?;
    let mut client = mqtt::Client::connect(&env.mqtt, "bench-hop").await?;
    client.subscribe("bench/hop/replies/#").await?;
    let (dev, method) = (DeviceId::parse("dev-1")?, MethodName::parse("ping")?);
    let mut round_trip = Vec::with_capacity(samples);
    for _ in 0..samples {
        let id = RequestId::random();
        let reply = format!("bench/hop/replies/{id}");
        let started = Instant::now();
        client
            .request(
                &topics.request(&dev, &method, &id),
                &reply,
                id.as_str(),
                b"{\"n\":1}",
            )
            .await?;
        client.next_publish(&reply).await?;
        round_trip.push(ms(started.elapsed()));
    }
    client.disconnect().await;
    Ok(round_trip)
}

/// The Lambda Invoke API into ingest, with an event it acknowledges without I/O.
async fn ingest_delivery(env: &Env, samples: usize) -> anyhow::Result<Vec<f64>> {
    let mut delivery = Vec::with_capacity(samples);
    let event =
        json!({"topic": "$aws/events/commandExecution/bench/IN_PROGRESS", "status": "IN_PROGRESS"});
    for _ in 0..samples {
        let started = Instant::now();
        let response = env
            .http
            .post(format!(
                "{}/2015-03-31/functions/ingest/invocations",
                env.api
            ))
            .json(&event)
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "ingest answered {}",
            response.status()
        );
        response.bytes().await?;
        delivery.push(ms(started.elapsed()));
    }
    Ok(delivery)
}

/// One conditional write and one consistent read on the stack's table, per sample: the write
/// latencies and the read latencies.
async fn dynamo_hops(env: &Env, samples: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let mut write = Vec::with_capacity(samples);
    let mut read = Vec::with_capacity(samples);
    for i in 0..samples {
        let pk = format!("BENCH#{}#{i}", uuid::Uuid::new_v4());
        let started = Instant::now();
        env.dynamo
            .put_item()
            .table_name(&env.table)
            .item("pk", AttributeValue::S(pk.clone()))
            .item("sk", AttributeValue::S("HOP".into()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .context("PutItem")?;
        write.push(ms(started.elapsed()));
        let started = Instant::now();
        env.dynamo
            .get_item()
            .table_name(&env.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S("HOP".into()))
            .consistent_read(true)
            .send()
            .await
            .context("GetItem")?;
        read.push(ms(started.elapsed()));
    }
    Ok((write, read))
}

fn p50(values: &[f64]) -> f64 {
    percentile(values, 50.0).unwrap_or(f64::NAN)
}

/// The AWS blog sample's approach: per call a new MQTT connection, subscribe to the reply
/// topic, publish the request, wait for the answer, disconnect; through the same broker to the
/// same simulated devices.
/// `concurrency` callers share the `calls`, each one call at a time.
pub async fn baseline(env: &Env, calls: usize, concurrency: usize) -> anyhow::Result<Batch> {
    let started_all = Instant::now();
    let per_caller = calls.div_ceil(concurrency.max(1));
    let callers = (0..concurrency.max(1)).map(|caller| {
        let first = caller * per_caller;
        baseline_calls(env, first..(first + per_caller).min(calls))
    });
    let mut batch = Batch::default();
    for done in futures::future::join_all(callers).await {
        let done = done?;
        batch.latencies.extend(done.latencies);
        batch.errors += done.errors;
    }
    batch.wall = started_all.elapsed();
    Ok(batch)
}

async fn baseline_calls(env: &Env, calls: std::ops::Range<usize>) -> anyhow::Result<Batch> {
    let topics = InvokeTopics::new("tether")?;
    let method = MethodName::parse("ping")?;
    let mut batch = Batch::default();
    let started_all = Instant::now();
    for i in calls {
        let dev = DeviceId::parse(device(i % env.devices))?;
        let id = RequestId::random();
        let reply = format!("bench/baseline/{id}");
        let started = Instant::now();
        let outcome: anyhow::Result<mqtt::Client> = async {
            let mut client = mqtt::Client::connect(&env.mqtt, &format!("bench-bl-{id}")).await?;
            client.subscribe(&reply).await?;
            client
                .request(
                    &topics.request(&dev, &method, &id),
                    &reply,
                    id.as_str(),
                    b"{\"n\":1}",
                )
                .await?;
            client.next_publish(&reply).await?;
            Ok(client)
        }
        .await;
        match outcome {
            // The caller has its answer here; the disconnect that follows is not counted.
            Ok(client) => {
                batch.latencies.push(ms(started.elapsed()));
                client.disconnect().await;
            }
            Err(_) => batch.errors += 1,
        }
    }
    batch.wall = started_all.elapsed();
    Ok(batch)
}
