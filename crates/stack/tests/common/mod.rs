//! What the stack tests share: a local stack on free ports, and an HTTP client for its API.

#![allow(dead_code)] // each test binary uses its own part
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use libtest_mimic::{Arguments, Failed, Trial};
use reqwest::header::HeaderMap;
use serde_json::Value;
use tether_stack::{Stack, StackConfig};
use tokio::sync::OnceCell;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Where a test's stack writes its logs: `.local/{name}-{pid}`.
pub fn log_dir(name: &str) -> PathBuf {
    root().join(format!(".local/{name}-{}", std::process::id()))
}

/// Starts the local stack on free ports, without reloading, logging to [`log_dir`].
pub async fn start_stack(name: &str) -> Result<Stack, String> {
    let mut config = StackConfig::new(root());
    config.api_port = 0;
    config.mqtt_port = 0;
    config.iot_port = 0;
    config.reload = false;
    config.log_dir = log_dir(name);
    // A Jobs minute of 3 s: job timeouts and rollout rates happen within a test.
    config.jobs_minute = Duration::from_secs(3);
    Stack::start(config)
        .await
        .map_err(|err| format!("the local stack did not start: {err:#}"))
}

/// A scenario of a suite: a named check against the suite's running stack.
pub struct Scenario {
    pub name: &'static str,
    pub run: for<'a> fn(&'a Api, &'a Stack) -> BoxFuture<'a, anyhow::Result<()>>,
}

/// A [`Scenario`] named after the async function that runs it.
#[macro_export]
macro_rules! scenario {
    ($name:ident) => {
        common::Scenario {
            name: stringify!($name),
            run: |api, stack| Box::pin($name(api, stack)),
        }
    };
}

/// Runs a suite's scenarios as the test binary's tests (its `main`, with `harness = false`).
///
/// Each scenario is a test of its own, so `cargo test --test e2e <name>` runs one and the
/// usual libtest flags work. They share one stack, started by the first scenario that runs
/// (never for `--list` or a filter that matches nothing) and stopped, by this function, when
/// the last one has finished; `after_each` runs after every scenario, passed or failed. The
/// scenarios run one at a time unless `--test-threads` says otherwise: several count what the
/// stack sent or logged, which a scenario running beside them would change. The stack's logs
/// are kept when a scenario fails and removed otherwise.
pub fn run_scenarios(
    suite: &'static str,
    scenarios: Vec<Scenario>,
    after_each: Option<for<'a> fn(&'a Stack) -> BoxFuture<'a, ()>>,
) -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads.get_or_insert(1);
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    type Started = Result<(Stack, Api), String>;
    let shared: Arc<OnceCell<Started>> = Arc::new(OnceCell::new());
    let trials = scenarios
        .into_iter()
        .map(|scenario| {
            let (runtime, shared) = (Arc::clone(&runtime), Arc::clone(&shared));
            Trial::test(scenario.name, move || {
                runtime.block_on(async {
                    let started = shared
                        .get_or_init(|| async {
                            let stack = start_stack(suite).await?;
                            let api = Api::new(&stack.endpoints.api);
                            Ok((stack, api))
                        })
                        .await;
                    let (stack, api) = started.as_ref().map_err(Failed::from)?;
                    let result = (scenario.run)(api, stack).await;
                    if let Some(after_each) = after_each {
                        after_each(stack).await;
                    }
                    result.map_err(|err| Failed::from(format!("{err:#}")))
                })
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    let started = Arc::try_unwrap(shared)
        .ok()
        .expect("every scenario has finished")
        .into_inner();
    if let Some(Ok((stack, _))) = started {
        runtime.block_on(stack.shutdown());
        let logs = log_dir(suite);
        if conclusion.has_failed() {
            eprintln!("the {suite} stack's logs are in {}", logs.display());
        } else {
            let _ = std::fs::remove_dir_all(logs);
        }
    }
    conclusion.exit_code()
}

/// The stack's HTTP API.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

/// An answer: status, headers, JSON body.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(40))
                .build()
                .unwrap(),
        }
    }

    /// Sends a request (a JSON body for anything but GET) and reads the JSON answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "GET" => self.http.get(&url),
            "PATCH" => self.http.patch(&url).json(&body.unwrap_or(Value::Null)),
            "DELETE" => self.http.delete(&url),
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
        let headers = response.headers().clone();
        let text = response.text().await?;
        // An empty answer (a 202 or 204 without a body) reads as null.
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{method} {path}: not JSON: {text}"))?
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// `POST /devices/{device}/invoke` with `method` and `timeoutMs`, no payload or key.
    pub async fn invoke(
        &self,
        device: &str,
        method: &str,
        timeout_ms: u64,
    ) -> anyhow::Result<(u16, Value)> {
        self.send(
            "POST",
            &format!("/devices/{device}/invoke"),
            Some(serde_json::json!({"method": method, "timeoutMs": timeout_ms})),
            None,
        )
        .await
    }

    /// [`Api::call`] without the headers.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let answer = self.call(method, path, body, key).await?;
        Ok((answer.status, answer.body))
    }
}

/// How many entries of a record's timeline (`GET /invocations/{id}`, `GET /executions/…`) have
/// `status`.
pub fn entries_with(record: &Value, status: &str) -> usize {
    record["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["status"] == status)
        .count()
}
