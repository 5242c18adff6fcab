//! The topic-rule engine: the topic rules of `template.yaml` (`AWS::IoT::TopicRule` resources
//! with Lambda actions, and `IoTRule` events of the functions), evaluated
//! on the local broker's messages and delivered to the functions through the Lambda Invoke API
//! (as `cargo lambda watch` serves it), asynchronously, with retries and a dead-letter log.
//!
//! SQL subset (anything else is refused when the rules are loaded, never silently ignored):
//! `SELECT <items> FROM '<topic filter>'`, where an item is `*`, `encode(*, 'base64') AS name`
//! (the whole payload, whatever it is, as base64 text), `topic() AS name`, `topic(n) AS name`,
//! `timestamp() AS name`, `'text' AS name`, or a payload field path `a.b [AS name]`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, Semaphore};

use tether_domain::clock::now_ms;

use crate::link::Message;

/// Why rules could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("template: {0}")]
    Template(String),
    #[error("rule {rule}: {problem}")]
    Sql { rule: String, problem: String },
}

/// One selected item.
#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    All,
    /// `encode(*, 'base64')`: the payload's bytes as base64 text.
    EncodedPayload {
        alias: String,
    },
    Topic {
        level: usize,
        alias: String,
    },
    /// `topic()`: the whole topic.
    FullTopic {
        alias: String,
    },
    Timestamp {
        alias: String,
    },
    Literal {
        value: Value,
        alias: String,
    },
    Field {
        path: Vec<String>,
        alias: String,
    },
}

/// One topic rule bound to a function.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// `{FunctionLogicalId}.{EventName}`
    pub name: String,
    /// The function's name at the Invoke API (its binary name).
    pub function: String,
    pub filter: String,
    pub select: Vec<Select>,
}

fn sql_error(rule: &str, problem: impl Into<String>) -> RuleError {
    RuleError::Sql {
        rule: rule.to_owned(),
        problem: problem.into(),
    }
}

/// Splits on commas outside quotes and parentheses.
fn split_items(list: &str) -> Vec<String> {
    let (mut items, mut current, mut depth, mut quoted) = (Vec::new(), String::new(), 0i32, false);
    for c in list.chars() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                items.push(current.trim().to_owned());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current.trim().to_owned());
    items
}

/// Parses `SELECT ... FROM '...'`.
pub fn parse_sql(rule: &str, sql: &str) -> Result<(Vec<Select>, String), RuleError> {
    let text = sql.trim();
    let upper = text.to_ascii_uppercase();
    if !upper.starts_with("SELECT ") {
        return Err(sql_error(rule, "must start with SELECT"));
    }
    let from = upper
        .rfind(" FROM ")
        .ok_or_else(|| sql_error(rule, "has no FROM"))?;
    let source = text[from + 6..].trim();
    if source.to_ascii_uppercase().contains(" WHERE ") || upper.contains(" WHERE ") {
        return Err(sql_error(
            rule,
            "WHERE clauses are not supported by local-iot",
        ));
    }
    let filter = source
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .ok_or_else(|| sql_error(rule, "FROM must be a quoted topic filter"))?
        .to_owned();
    let mut select = Vec::new();
    for item in split_items(&text[7..from]) {
        let (expr, alias) = match item.to_ascii_uppercase().rfind(" AS ") {
            Some(at) => (
                item[..at].trim().to_owned(),
                Some(item[at + 4..].trim().to_owned()),
            ),
            None => (item.clone(), None),
        };
        let lower = expr.to_ascii_lowercase();
        let need_alias = |what: &str| {
            alias
                .clone()
                .ok_or_else(|| sql_error(rule, format!("{what} needs AS <name>")))
        };
        let parsed = if expr == "*" {
            Select::All
        } else if lower.replace(' ', "") == "encode(*,'base64')" {
            Select::EncodedPayload {
                alias: need_alias(&expr)?,
            }
        } else if lower.replace(' ', "") == "topic()" {
            Select::FullTopic {
                alias: need_alias(&expr)?,
            }
        } else if let Some(n) = lower
            .strip_prefix("topic(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let level = n
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| sql_error(rule, format!("bad topic index in {expr}")))?;
            Select::Topic {
                level,
                alias: need_alias(&expr)?,
            }
        } else if lower == "timestamp()" {
            Select::Timestamp {
                alias: need_alias(&expr)?,
            }
        } else if let Some(text) = expr.strip_prefix('\'').and_then(|e| e.strip_suffix('\'')) {
            Select::Literal {
                value: json!(text),
                alias: need_alias(&expr)?,
            }
        } else if !expr.is_empty()
            && expr
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            let path: Vec<String> = expr.split('.').map(str::to_owned).collect();
            let alias = alias.unwrap_or_else(|| path.last().cloned().unwrap_or_default());
            Select::Field { path, alias }
        } else {
            return Err(sql_error(
                rule,
                format!("{expr} is not supported by local-iot"),
            ));
        };
        select.push(parsed);
    }
    Ok((select, filter))
}

/// Evaluates a rule's SELECT on a message. A payload that is not a JSON object can only be
/// used with items that do not read it.
pub fn evaluate(select: &[Select], topic: &str, payload: &[u8], now: i64) -> Result<Value, String> {
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(payload).ok();
    let levels: Vec<&str> = topic.split('/').collect();
    let mut out = Map::new();
    for item in select {
        match item {
            Select::All => match &parsed {
                Some(object) => out.extend(object.clone()),
                None => return Err("SELECT * needs a JSON object payload".into()),
            },
            Select::EncodedPayload { alias } => {
                use base64::Engine as _;
                let text = base64::engine::general_purpose::STANDARD.encode(payload);
                out.insert(alias.clone(), json!(text));
            }
            Select::Topic { level, alias } => {
                if let Some(value) = levels.get(level - 1) {
                    out.insert(alias.clone(), json!(value));
                }
            }
            Select::FullTopic { alias } => {
                out.insert(alias.clone(), json!(topic));
            }
            Select::Timestamp { alias } => {
                out.insert(alias.clone(), json!(now));
            }
            Select::Literal { value, alias } => {
                out.insert(alias.clone(), value.clone());
            }
            Select::Field { path, alias } => {
                let object = parsed
                    .as_ref()
                    .ok_or("a field needs a JSON object payload")?;
                let mut value = object.get(&path[0]);
                for key in &path[1..] {
                    value = value.and_then(|v| v.get(key));
                }
                if let Some(value) = value {
                    out.insert(alias.clone(), value.clone());
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// Replaces `${Name}` with the template parameter's default (for `!Sub` strings).
fn substitute(text: &str, defaults: &HashMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (name, value) in defaults {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    out
}

/// A template string: plain, `!Sub "..."` or `Fn::Sub: "..."` (parameters take their defaults).
fn template_string(
    value: &serde_norway::Value,
    defaults: &HashMap<String, String>,
) -> Option<String> {
    match value {
        serde_norway::Value::String(text) => Some(text.clone()),
        serde_norway::Value::Tagged(tagged) if tagged.tag == "Sub" => {
            tagged.value.as_str().map(|t| substitute(t, defaults))
        }
        serde_norway::Value::Mapping(map) if map.len() == 1 => map
            .get("Fn::Sub")
            .and_then(|v| v.as_str())
            .map(|t| substitute(t, defaults)),
        _ => None,
    }
}

/// The logical id named by `!GetAtt X.Arn` or `Fn::GetAtt: [X, Arn]`.
fn get_att_arn(value: &serde_norway::Value) -> Option<String> {
    match value {
        serde_norway::Value::Tagged(tagged) if tagged.tag == "GetAtt" => match &tagged.value {
            serde_norway::Value::String(text) => text.strip_suffix(".Arn").map(str::to_owned),
            serde_norway::Value::Sequence(parts)
                if parts.len() == 2 && parts[1].as_str() == Some("Arn") =>
            {
                parts[0].as_str().map(str::to_owned)
            }
            _ => None,
        },
        serde_norway::Value::Mapping(map) => match map.get("Fn::GetAtt") {
            Some(serde_norway::Value::Sequence(parts))
                if parts.len() == 2 && parts[1].as_str() == Some("Arn") =>
            {
                parts[0].as_str().map(str::to_owned)
            }
            Some(serde_norway::Value::String(text)) => text.strip_suffix(".Arn").map(str::to_owned),
            _ => None,
        },
        _ => None,
    }
}

/// Reads the topic rules of a SAM template: every `AWS::IoT::TopicRule` whose actions invoke a
/// function of the template, and every `IoTRule` event of an `AWS::Serverless::Function`. A
/// function is reached by its binary name (`Metadata.BuildProperties.Binary`, as
/// `cargo lambda watch` serves it), else by its logical id.
pub fn rules_from_template(template: &str) -> Result<Vec<Rule>, RuleError> {
    let doc: serde_norway::Value =
        serde_norway::from_str(template).map_err(|e| RuleError::Template(e.to_string()))?;
    let mut defaults = HashMap::new();
    if let Some(serde_norway::Value::Mapping(parameters)) = doc.get("Parameters") {
        for (name, spec) in parameters {
            if let (Some(name), Some(default)) = (name.as_str(), spec.get("Default")) {
                let text = match default {
                    serde_norway::Value::String(s) => s.clone(),
                    other => serde_norway::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                defaults.insert(name.to_owned(), text);
            }
        }
    }
    let mut rules = Vec::new();
    let Some(serde_norway::Value::Mapping(resources)) = doc.get("Resources") else {
        return Ok(rules);
    };
    let binary_of = |logical_id: &str| -> Option<String> {
        let resource = resources.get(logical_id)?;
        if resource.get("Type").and_then(|t| t.as_str()) != Some("AWS::Serverless::Function") {
            return None;
        }
        Some(
            resource
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .and_then(|b| b.as_str())
                .unwrap_or(logical_id)
                .to_owned(),
        )
    };
    for (logical_id, resource) in resources {
        let logical_id = logical_id.as_str().unwrap_or_default();
        match resource.get("Type").and_then(|t| t.as_str()) {
            Some("AWS::IoT::TopicRule") => {
                let payload = resource
                    .get("Properties")
                    .and_then(|p| p.get("TopicRulePayload"));
                if payload
                    .and_then(|p| p.get("RuleDisabled"))
                    .and_then(|d| d.as_bool())
                    == Some(true)
                {
                    continue;
                }
                let sql = payload
                    .and_then(|p| p.get("Sql"))
                    .and_then(|s| template_string(s, &defaults))
                    .ok_or_else(|| {
                        sql_error(
                            logical_id,
                            "TopicRulePayload.Sql must be a string or !Sub string",
                        )
                    })?;
                let (select, filter) = parse_sql(logical_id, &sql)?;
                let actions = payload
                    .and_then(|p| p.get("Actions"))
                    .and_then(|a| a.as_sequence())
                    .cloned()
                    .unwrap_or_default();
                for action in actions {
                    let Some(target) = action
                        .get("Lambda")
                        .and_then(|l| l.get("FunctionArn"))
                        .and_then(get_att_arn)
                    else {
                        tracing::warn!(rule = logical_id, "only Lambda actions on the template's functions are emulated; skipping an action");
                        continue;
                    };
                    let function = binary_of(&target).ok_or_else(|| {
                        sql_error(
                            logical_id,
                            format!(
                                "action targets {target}, which is not a function of this template"
                            ),
                        )
                    })?;
                    rules.push(Rule {
                        name: logical_id.to_owned(),
                        function,
                        filter: filter.clone(),
                        select: select.clone(),
                    });
                }
            }
            Some("AWS::Serverless::Function") => {
                let function = binary_of(logical_id).unwrap_or_else(|| logical_id.to_owned());
                let Some(serde_norway::Value::Mapping(events)) =
                    resource.get("Properties").and_then(|p| p.get("Events"))
                else {
                    continue;
                };
                for (event_name, event) in events {
                    if event.get("Type").and_then(|t| t.as_str()) != Some("IoTRule") {
                        continue;
                    }
                    let name = format!("{logical_id}.{}", event_name.as_str().unwrap_or_default());
                    let sql = event
                        .get("Properties")
                        .and_then(|p| p.get("Sql"))
                        .and_then(|s| template_string(s, &defaults))
                        .ok_or_else(|| {
                            sql_error(&name, "Properties.Sql must be a string or !Sub string")
                        })?;
                    let (select, filter) = parse_sql(&name, &sql)?;
                    rules.push(Rule {
                        name,
                        function: function.clone(),
                        filter,
                        select,
                    });
                }
            }
            _ => {}
        }
    }
    rules.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rules)
}

/// The function that consumes the dead-letter queue: the one an `AWS::Lambda::EventSourceMapping`
/// of the template names (`FunctionName: !Ref X`), by its binary name. `None` when the template
/// has no such mapping (dead letters are then replayed to the function that failed on them).
pub fn redrive_function_from_template(template: &str) -> Result<Option<String>, RuleError> {
    let doc: serde_norway::Value =
        serde_norway::from_str(template).map_err(|e| RuleError::Template(e.to_string()))?;
    let Some(serde_norway::Value::Mapping(resources)) = doc.get("Resources") else {
        return Ok(None);
    };
    for (_, resource) in resources {
        if resource.get("Type").and_then(|t| t.as_str()) != Some("AWS::Lambda::EventSourceMapping")
        {
            continue;
        }
        let target = match resource
            .get("Properties")
            .and_then(|p| p.get("FunctionName"))
        {
            Some(serde_norway::Value::Tagged(tagged)) if tagged.tag == "Ref" => {
                tagged.value.as_str().map(str::to_owned)
            }
            Some(serde_norway::Value::Mapping(map)) => {
                map.get("Ref").and_then(|r| r.as_str()).map(str::to_owned)
            }
            _ => None,
        };
        let Some(target) = target else { continue };
        let function = resources.get(target.as_str()).ok_or_else(|| {
            RuleError::Template(format!(
                "the event source mapping names {target}, which is not a resource"
            ))
        })?;
        let binary = function
            .get("Metadata")
            .and_then(|m| m.get("BuildProperties"))
            .and_then(|b| b.get("Binary"))
            .and_then(|b| b.as_str())
            .unwrap_or(target.as_str());
        return Ok(Some(binary.to_owned()));
    }
    Ok(None)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_subset_parses() {
        let (select, filter) =
            parse_sql("r", "SELECT *, topic(4) AS commandId, timestamp() AS receivedAt, 'x' AS kind, a.b FROM '$aws/events/commandExecution/+/#'").unwrap();
        assert_eq!(filter, "$aws/events/commandExecution/+/#");
        assert_eq!(select.len(), 5);
        assert_eq!(
            select[1],
            Select::Topic {
                level: 4,
                alias: "commandId".into()
            }
        );
        assert_eq!(
            select[4],
            Select::Field {
                path: vec!["a".into(), "b".into()],
                alias: "b".into()
            }
        );
    }

    #[test]
    fn the_payload_can_be_selected_whole_as_base64_whatever_it_is() {
        let sql = "SELECT encode(*, 'base64') AS payload, topic() AS topic, timestamp() AS receivedAt FROM 'tether/replies/+/+'";
        let (select, _) = parse_sql("r", sql).unwrap();

        for payload in [
            &br#"{"topic":"spoofed","receivedAt":1,"Records":[]}"#[..],
            b"\xff\x00 not json",
            b"",
        ] {
            let out = evaluate(&select, "tether/replies/dev-1/r1", payload, 7).unwrap();
            use base64::Engine as _;
            let expected = base64::engine::general_purpose::STANDARD.encode(payload);
            assert_eq!(
                out,
                json!({"payload": expected, "topic": "tether/replies/dev-1/r1", "receivedAt": 7}),
                "the payload's own fields never reach the top level"
            );
        }
        assert!(
            parse_sql("r", "SELECT encode(*, 'base64') FROM 'a'").is_err(),
            "needs AS"
        );
        assert!(parse_sql("r", "SELECT encode(*, 'hex') AS p FROM 'a'").is_err());
    }

    #[test]
    fn the_redrive_function_is_the_event_source_mappings() {
        let template = r#"
Resources:
  RedriveFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: redrive
  DeadLetterRedrive:
    Type: AWS::Lambda::EventSourceMapping
    Properties:
      FunctionName: !Ref RedriveFunction
"#;
        assert_eq!(
            redrive_function_from_template(template).unwrap().as_deref(),
            Some("redrive")
        );
        assert_eq!(
            redrive_function_from_template("Resources: {}").unwrap(),
            None
        );
    }

    #[test]
    fn unsupported_sql_is_refused_not_ignored() {
        for sql in [
            "SELECT * FROM 'a/b' WHERE x > 1",
            "SELECT upper(x) AS y FROM 'a'",
            "SELECT topic(3) FROM 'a'",
            "SELECT * FROM a/b",
            "DELETE FROM 'a'",
        ] {
            assert!(parse_sql("r", sql).is_err(), "{sql}");
        }
    }

    #[test]
    fn evaluation_selects_fields_and_topic_levels() {
        let sql = "SELECT *, topic(3) AS deviceId, topic(4) AS requestId, topic() AS topic FROM 'tether/replies/+/+'";
        let (select, _) = parse_sql("r", sql).unwrap();
        let payload = br#"{"status":"SUCCEEDED","topic":"spoofed"}"#;

        let out = evaluate(&select, "tether/replies/dev-1/r1", payload, 7).unwrap();

        assert_eq!(
            out,
            json!({"status": "SUCCEEDED", "deviceId": "dev-1", "requestId": "r1", "topic": "tether/replies/dev-1/r1"}),
            "selected items win over payload fields of the same name"
        );
        assert!(evaluate(&select, "tether/replies/dev-1/r1", b"not json", 7).is_err());
    }

    #[test]
    fn rules_come_from_the_functions_in_a_template() {
        let template = r#"
Parameters:
  TopicPrefix:
    Type: String
    Default: tether
Resources:
  IngestFunction:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: ingest
    Properties:
      Events:
        Replies:
          Type: IoTRule
          Properties:
            Sql: !Sub "SELECT *, topic(3) AS deviceId FROM '${TopicPrefix}/replies/+/+'"
        Api:
          Type: HttpApi
  Table:
    Type: AWS::DynamoDB::Table
"#;
        let rules = rules_from_template(template).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules_from_template(&template.replace("Binary: ingest", "Binary: other")).unwrap()[0]
                .function,
            "other"
        );
        assert_eq!(rules[0].name, "IngestFunction.Replies");
        assert_eq!(rules[0].function, "ingest");
        assert_eq!(rules[0].filter, "tether/replies/+/+");
    }
}
