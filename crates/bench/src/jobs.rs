//! AWS IoT Jobs beside Commands, through the API, on the same simulated devices:
//! - how many `POST /jobs` (one device each) the API takes a second, one at a time and 8 at
//!   once;
//! - from `POST /jobs` over every device to the job COMPLETED with every execution SUCCEEDED
//!   (the devices take the job over MQTT: notify-next, start-next, update), read by polling
//!   `GET /jobs/{jobId}` every 25 ms;
//! - the same devices' answers to one Commands fan-out (`POST /commands/{id}/executions` with
//!   every device as a target and `waitMs`, which answers once every execution is final).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::Env;

fn devices(env: &Env) -> Vec<String> {
    (1..=env.devices).map(|n| format!("dev-{n}")).collect()
}

/// A part of an id that no other call of this run, or other run, repeats.
fn tag() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        tether_domain::clock::now_ms(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn post(env: &Env, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let response = env
        .http
        .post(format!("{}{path}", env.api))
        .json(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// Jobs created a second at `concurrency`, over `count` creations of one-device jobs.
pub async fn creation_rate(env: &Env, count: usize, concurrency: usize) -> anyhow::Result<f64> {
    let run = tag();
    let targets = devices(env);
    let started = Instant::now();
    let results: Vec<anyhow::Result<u16>> = stream::iter(0..count)
        .map(|i| {
            let body = json!({
                "jobId": format!("bench-rate-{run}-{i}"),
                "targets": [targets[i % targets.len()]],
                "document": {"operation": "upgrade", "n": i},
            });
            async move { post(env, "/jobs", &body).await.map(|(status, _)| status) }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    let created = results.iter().filter(|r| matches!(r, Ok(201))).count();
    ensure!(created == count, "{created} of {count} jobs were created");
    // Let the devices run these before anything else is measured.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(count as f64 / wall.as_secs_f64())
}

/// Milliseconds from `POST /jobs` over every device to the job COMPLETED with all SUCCEEDED.
pub async fn fleet_job(env: &Env) -> anyhow::Result<f64> {
    let id = format!("bench-fleet-{}", tag());
    let body = json!({"jobId": id, "targets": devices(env), "document": {"operation": "upgrade"}});
    let started = Instant::now();
    let (status, created) = post(env, "/jobs", &body).await?;
    ensure!(status == 201, "POST /jobs: {status} {created}");
    let deadline = started + Duration::from_secs(60);
    loop {
        let job: Value = env
            .http
            .get(format!("{}/jobs/{id}", env.api))
            .send()
            .await?
            .json()
            .await?;
        if job["status"] == "COMPLETED" {
            let elapsed = started.elapsed();
            let succeeded = job["counts"]["SUCCEEDED"].as_u64().unwrap_or(0);
            ensure!(
                succeeded == env.devices as u64,
                "{succeeded} of {} succeeded: {job}",
                env.devices
            );
            return Ok(elapsed.as_secs_f64() * 1000.0);
        }
        ensure!(Instant::now() < deadline, "the job did not complete: {job}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Milliseconds from `POST /commands/{id}/executions` over every device (with `waitMs`) to the
/// answer with every execution SUCCEEDED.
pub async fn commands_fan_out(env: &Env) -> anyhow::Result<f64> {
    let id = format!("bench-fan-{}", tag());
    let (status, created) = post(
        env,
        "/commands",
        &json!({"commandId": id, "payload": {"content": {"operation": "upgrade"}}}),
    )
    .await?;
    ensure!(status == 201, "POST /commands: {status} {created}");
    let started = Instant::now();
    let (status, answer) = post(
        env,
        &format!("/commands/{id}/executions"),
        &json!({"targets": devices(env), "timeoutSeconds": 30, "waitMs": 25000}),
    )
    .await?;
    let elapsed = started.elapsed();
    ensure!(
        status == 200,
        "the fan-out did not finish: {status} {answer}"
    );
    let executions = answer["executions"].as_array().context("executions")?;
    let succeeded = executions
        .iter()
        .filter(|e| e["status"] == "SUCCEEDED")
        .count();
    ensure!(
        succeeded == env.devices,
        "{succeeded} of {} succeeded",
        env.devices
    );
    Ok(elapsed.as_secs_f64() * 1000.0)
}
