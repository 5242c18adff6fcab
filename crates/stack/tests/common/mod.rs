//! What the stack tests share: a local stack on free ports, and an HTTP client for its API.

#![allow(dead_code)] // each test binary uses its own part
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tether_stack::{Stack, StackConfig};

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

/// The local stack on free ports, without reloading, logging to [`log_dir`].
pub async fn start_stack(name: &str) -> Stack {
    let mut config = StackConfig::new(root());
    config.api_port = 0;
    config.mqtt_port = 0;
    config.iot_port = 0;
    config.reload = false;
    config.log_dir = log_dir(name);
    Stack::start(config).await.expect("the local stack starts")
}

/// Stops the stack, then fails with every scenario failure, or removes the logs.
pub async fn finish(stack: Stack, name: &str, failures: Vec<String>) {
    stack.shutdown().await;
    let logs = log_dir(name);
    assert!(
        failures.is_empty(),
        "{} scenario(s) failed (logs in {}):\n{}",
        failures.len(),
        logs.display(),
        failures.join("\n")
    );
    let _ = std::fs::remove_dir_all(logs);
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
        Ok(Answer {
            status,
            headers,
            body: serde_json::from_str(&text)
                .with_context(|| format!("{method} {path}: not JSON: {text}"))?,
        })
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
