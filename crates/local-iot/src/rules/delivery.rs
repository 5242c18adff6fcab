//! Delivery of rule output to the functions: each rule's subscription evaluated and delivered
//! ([`run`]) through the Lambda Invoke API, with retries, the [`DeadLetters`] of what still
//! failed, and their replay as the deployed stack redrives its dead-letter queue.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use tether_domain::clock::now_ms;

use super::{evaluate, Rule};
use crate::link::Message;

/// What could not be delivered, kept in memory (for `GET /_local/dead-letters`) and appended
/// as JSON lines to a file when one is configured.
#[derive(Debug, Clone, Default)]
pub struct DeadLetters {
    entries: Arc<Mutex<Vec<Value>>>,
    file: Option<PathBuf>,
}

impl DeadLetters {
    pub fn new(file: Option<PathBuf>) -> Self {
        Self {
            entries: Arc::default(),
            file,
        }
    }

    pub fn all(&self) -> Vec<Value> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes out every entry that holds an event (so can be delivered again), leaving the
    /// rest (messages no rule could evaluate).
    fn take_replayable(&self) -> Vec<Value> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (replayable, kept) = entries
            .drain(..)
            .partition(|entry: &Value| entry.get("event").is_some());
        *entries = kept;
        replayable
    }

    fn push(&self, entry: Value) {
        tracing::warn!(entry = %entry, "rule delivery dead-lettered");
        if let Some(path) = &self.file {
            use std::io::Write;
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{entry}"));
            if let Err(err) = written {
                tracing::error!(error = %err, path = %path.display(), "cannot write the dead-letter file");
            }
        }
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    }
}

/// How rule output reaches the functions.
#[derive(Debug, Clone)]
pub struct Delivery {
    http: reqwest::Client,
    /// e.g. `http://127.0.0.1:9000` (cargo lambda watch)
    pub endpoint: String,
    /// Attempts after the first (Lambda's asynchronous invoke makes 2).
    pub retries: u32,
    /// Wait before the first retry; doubled each time.
    pub backoff: Duration,
    pub dead_letters: DeadLetters,
    /// Where a replay sends the dead letters (see [`redrive_function_from_template`]); `None`:
    /// back to the function that failed on each.
    ///
    /// [`redrive_function_from_template`]: super::redrive_function_from_template
    pub redrive_function: Option<String>,
    /// Deliveries in flight at once, over all rules. Below the 100 requests `cargo lambda
    /// watch` queues per function: past that it stops dispatching altogether.
    in_flight: Arc<Semaphore>,
}

/// Rule deliveries in flight at once (see [`Delivery`]).
pub const DELIVERIES_IN_FLIGHT: usize = 64;

impl Delivery {
    pub fn new(
        endpoint: String,
        retries: u32,
        backoff: Duration,
        dead_letters: DeadLetters,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            retries,
            backoff,
            dead_letters,
            redrive_function: None,
            in_flight: Arc::new(Semaphore::new(DELIVERIES_IN_FLIGHT)),
        }
    }

    /// Replays go to `function` (the dead-letter queue's consumer).
    pub fn with_redrive_function(mut self, function: Option<String>) -> Self {
        self.redrive_function = function;
        self
    }

    /// One synchronous invoke; the function's answer, `null` when it has none.
    async fn invoke_once(&self, function: &str, event: &Value) -> Result<Value, String> {
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.endpoint
        );
        let response = self
            .http
            .post(&url)
            .json(event)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        if let Some(kind) = response.headers().get("x-amz-function-error") {
            let kind = kind.to_str().unwrap_or("Unhandled").to_owned();
            let body = response.text().await.unwrap_or_default();
            return Err(format!("function error ({kind}): {body}"));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("HTTP {status}: {body}"));
        }
        let body = response.bytes().await.unwrap_or_default();
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Delivers with retries; what still fails goes to the dead letters.
    pub async fn deliver(&self, rule: &Rule, topic: &str, event: Value) {
        let mut wait = self.backoff;
        let mut last_error = String::new();
        for attempt in 0..=self.retries {
            match self.invoke_once(&rule.function, &event).await {
                Ok(_) => {
                    tracing::debug!(rule = %rule.name, function = %rule.function, topic, attempt, "rule delivered");
                    return;
                }
                Err(err) => {
                    tracing::debug!(rule = %rule.name, attempt, error = %err, "rule delivery failed");
                    last_error = err;
                }
            }
            if attempt < self.retries {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        self.dead_letters.push(json!({
            "rule": rule.name, "function": rule.function, "topic": topic, "event": event,
            "error": last_error, "attempts": self.retries + 1, "at": now_ms(),
        }));
    }
}

/// What a replay of the dead letters did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Replay {
    /// Delivered this time, and gone from the dead letters.
    pub delivered: usize,
    /// Failed again, and back in the dead letters.
    pub failed: usize,
}

/// What the deployed dead-letter queue holds for an event a function failed on after Lambda's
/// retries (the `OnFailure` destination's record), delivered as the queue's event source
/// mapping delivers it: an SQS batch of one message.
fn redrive_batch(entry: &Value, message_id: &str) -> Value {
    let function = entry["function"].as_str().unwrap_or_default();
    let record = json!({
        "version": "1.0",
        "timestamp": tether_domain::clock::rfc3339(entry["at"].as_i64().unwrap_or_else(now_ms)),
        "requestContext": {
            "requestId": message_id,
            "functionArn": format!("arn:aws:lambda:local:000000000000:function:{function}"),
            "condition": "RetriesExhausted",
            "approximateInvokeCount": entry["attempts"],
        },
        "requestPayload": entry["event"],
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": entry["error"]},
    });
    json!({"Records": [{
        "messageId": message_id,
        "receiptHandle": message_id,
        "body": record.to_string(),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:local:000000000000:dead-letters",
        "awsRegion": "local",
    }]})
}

impl Delivery {
    /// Delivers every dead-lettered event once more, in the order they failed, the way the
    /// deployed stack redrives its dead-letter queue (`RedriveDeadLetters`): to the function, as
    /// an SQS message holding Lambda's failure record. A function error, or the message in the
    /// answer's `batchItemFailures`, puts the event back in the dead letters.
    pub async fn replay_dead_letters(&self) -> Replay {
        let mut replay = Replay::default();
        for (n, mut entry) in self.dead_letters.take_replayable().into_iter().enumerate() {
            let function = match &self.redrive_function {
                Some(function) => function.clone(),
                None => entry["function"].as_str().unwrap_or_default().to_owned(),
            };
            let message_id = format!("local-{}-{n}", now_ms());
            let answer = self
                .invoke_once(&function, &redrive_batch(&entry, &message_id))
                .await
                .and_then(|answer| match answer["batchItemFailures"].as_array() {
                    Some(failed) if !failed.is_empty() => {
                        Err(format!("the function kept the message: {answer}"))
                    }
                    _ => Ok(()),
                });
            match answer {
                Ok(()) => replay.delivered += 1,
                Err(err) => {
                    replay.failed += 1;
                    entry["error"] = json!(err);
                    entry["at"] = json!(now_ms());
                    self.dead_letters.push(entry);
                }
            }
        }
        tracing::info!(
            delivered = replay.delivered,
            failed = replay.failed,
            "dead letters replayed"
        );
        replay
    }
}

/// Evaluates and delivers every message of one rule's subscription, each in its own task
/// (at most [`DELIVERIES_IN_FLIGHT`] at once over all rules), as Lambda's asynchronous invoke
/// would.
pub async fn run(rule: Rule, mut messages: mpsc::UnboundedReceiver<Message>, delivery: Delivery) {
    let limit = delivery.in_flight.clone();
    let rule = Arc::new(rule);
    while let Some(message) = messages.recv().await {
        let event = match evaluate(&rule.select, &message.topic, &message.payload, now_ms()) {
            Ok(event) => event,
            Err(problem) => {
                delivery.dead_letters.push(json!({
                    "rule": rule.name, "function": rule.function, "topic": message.topic,
                    "error": problem, "attempts": 0, "at": now_ms(),
                }));
                continue;
            }
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (rule, delivery) = (rule.clone(), delivery.clone());
        tokio::spawn(async move {
            delivery.deliver(&rule, &message.topic, event).await;
            drop(permit);
        });
    }
}
