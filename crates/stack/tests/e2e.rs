//! End to end on the local stack: the local DynamoDB endpoint, local-iot, the real function
//! binaries under `cargo lambda watch`, and simulated devices; driven through HTTP as a user
//! would. The stack starts once; the scenarios run in turn and every failure is reported.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use tether_stack::demo::Demo;
use tether_stack::{Stack, StackConfig};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url).json(&body.unwrap_or(Value::Null)),
        };
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text)
                .with_context(|| format!("{method} {path}: not JSON: {text}"))?,
        ))
    }
}

fn received_by(stack: &Stack, method: &str) -> usize {
    stack
        .fleet()
        .unwrap()
        .received()
        .iter()
        .filter(|r| r.method.as_deref() == Some(method))
        .count()
}

async fn concurrent_calls_to_one_device_each_get_their_own_answer(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let call = |n: u32| {
        api.send(
            "POST",
            "/devices/dev-1/invoke",
            Some(json!({"method": "slow", "payload": {"n": n}, "timeoutMs": 10000})),
            None,
        )
    };
    let (a, b) = tokio::join!(call(1), call(2));
    let ((sa, a), (sb, b)) = (a?, b?);
    ensure!(sa == 200 && sb == 200, "both answered: {a} {b}");
    ensure!(
        a["result"] == json!({"n": 1}) && b["result"] == json!({"n": 2}),
        "no cross-talk: {a} {b}"
    );
    ensure!(a["requestId"] != b["requestId"], "two invocations");
    Ok(())
}

async fn an_idempotent_retry_publishes_once_and_returns_the_same_invocation(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    let body = json!({"method": "reboot", "payload": {"force": true}, "timeoutMs": 5000});
    let (first_status, first) = api
        .send(
            "POST",
            "/devices/dev-2/invoke",
            Some(body.clone()),
            Some("e2e-reboot-1"),
        )
        .await?;
    let (retry_status, retry) = api
        .send(
            "POST",
            "/devices/dev-2/invoke",
            Some(body),
            Some("e2e-reboot-1"),
        )
        .await?;
    let (conflict_status, conflict) = api
        .send(
            "POST",
            "/devices/dev-2/invoke",
            Some(json!({"method": "reboot", "timeoutMs": 5000})),
            Some("e2e-reboot-1"),
        )
        .await?;
    ensure!(
        first_status == 200 && retry_status == 200,
        "{first} {retry}"
    );
    ensure!(
        first["requestId"] == retry["requestId"],
        "same invocation: {first} {retry}"
    );
    ensure!(
        received_by(stack, "reboot") == 1,
        "the device got the request once, got {}",
        received_by(stack, "reboot")
    );
    ensure!(
        conflict_status == 409 && conflict["code"] == "CONFLICT",
        "{conflict}"
    );
    Ok(())
}

async fn hostile_names_are_refused_before_any_publish(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    let before = stack.fleet().unwrap().received().len();
    for (path, body) in [
        ("/devices/dev-1/invoke", json!({"method": "x/+/#"})),
        ("/devices/dev-1/invoke", json!({"method": "$aws"})),
        ("/devices/dev%2F1/invoke", json!({"method": "ok"})),
        ("/devices/dev+1/invoke", json!({"method": "ok"})),
        (
            "/devices/dev-1/invoke",
            json!({"method": "ok", "timeoutMs": 50}),
        ),
        (
            "/devices/dev-1/invoke",
            json!({"method": "ok", "payload": "x".repeat(140_000)}),
        ),
    ] {
        let (status, problem) = api.send("POST", path, Some(body), None).await?;
        ensure!((400..500).contains(&status), "{path}: {status} {problem}");
        ensure!(
            problem["code"].is_string() && problem["type"].is_string(),
            "problem+json: {problem}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        stack.fleet().unwrap().received().len() == before,
        "nothing was published"
    );
    Ok(())
}

async fn the_read_routes_answer_on_the_deployed_paths(api: &Api, _: &Stack) -> anyhow::Result<()> {
    let (status, missing) = api.send("GET", "/invocations/0000", None, None).await?;
    ensure!(
        status == 404 && missing["code"] == "INVOCATION_NOT_FOUND",
        "{missing}"
    );
    let (status, list) = api
        .send("GET", "/devices/dev-1/executions?limit=5", None, None)
        .await?;
    ensure!(status == 200 && list["items"].is_array(), "{list}");
    let (status, bad) = api
        .send(
            "GET",
            "/commands/c-1/executions?nextToken=forged",
            None,
            None,
        )
        .await?;
    ensure!(
        status == 400 && bad["code"] == "INVALID_NEXT_TOKEN",
        "{bad}"
    );
    Ok(())
}

async fn an_offline_device_is_refused_fast(api: &Api, _: &Stack) -> anyhow::Result<()> {
    let started = Instant::now();
    let (status, problem) = api
        .send(
            "POST",
            "/devices/never-seen/invoke",
            Some(json!({"method": "ping", "timeoutMs": 20000})),
            None,
        )
        .await?;
    ensure!(
        status == 404 && problem["code"] == "DEVICE_NOT_CONNECTED",
        "{problem}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "refused without waiting for the timeout"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_works_end_to_end_on_the_local_stack() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let mut config = StackConfig::new(&root);
    config.api_port = 0;
    config.mqtt_port = 0;
    config.iot_port = 0;
    config.reload = false;
    config.log_dir = root.join(format!(".local/e2e-{}", std::process::id()));
    let stack = Stack::start(config).await.expect("the local stack starts");
    let api = Api {
        base: stack.endpoints.api.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(40))
            .build()
            .unwrap(),
    };

    let mut failures = Vec::new();
    let mut demo = Demo::new(&api.base);
    demo.verbose = false;
    if let Err(err) = demo.run().await {
        failures.push(format!("demo: {err:#}"));
    }
    macro_rules! scenario {
        ($name:ident) => {
            if let Err(err) = $name(&api, &stack).await {
                failures.push(format!("{}: {err:#}", stringify!($name)));
            }
        };
    }
    scenario!(concurrent_calls_to_one_device_each_get_their_own_answer);
    scenario!(an_idempotent_retry_publishes_once_and_returns_the_same_invocation);
    scenario!(hostile_names_are_refused_before_any_publish);
    scenario!(the_read_routes_answer_on_the_deployed_paths);
    scenario!(an_offline_device_is_refused_fast);

    let logs = root.join(format!(".local/e2e-{}", std::process::id()));
    stack.shutdown().await;
    assert!(
        failures.is_empty(),
        "{} scenario(s) failed (logs in {}):\n{}",
        failures.len(),
        logs.display(),
        failures.join("\n")
    );
    let _ = std::fs::remove_dir_all(logs);
}
