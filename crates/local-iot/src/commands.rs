//! AWS IoT Commands, emulated: command resources, executions, the device topics, timeouts and
//! execution events, as `docs/aws-iot-reference.md` §2 describes them.
//!
//! State lives in memory behind one mutex. Nothing is held across an `.await`: each operation
//! changes the state, collects the MQTT messages it implies, and publishes them afterwards.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::{json, Map, Value};

use tether_domain::clock::{now_ms, parse_rfc3339};
use tether_domain::reply::{CommandResponse, ResultValue};
use tether_domain::status::{check_transition, fingerprint, Lifecycle, NO_RESPONSE_FROM_DEVICE};
use tether_domain::topics::{
    CommandAction, CommandTopic, ExecutionEventTopic, PayloadFormat, ResponseFormat, TargetKind,
};
use tether_domain::{
    CommandId, DeviceId, ExecutionId, ExecutionStatus, Phase, Source, StatusReason,
};

use crate::aws::{arn_resource, Account, AwsError};
use crate::link::{Link, Message, Outgoing};

/// Largest static payload or payload template (AWS: 32 KB).
const MAX_COMMAND_PAYLOAD: usize = 32 * 1024;
/// Default and largest execution timeout (AWS: 10 s and 12 h).
const DEFAULT_EXECUTION_TIMEOUT_S: i64 = 10;
const MAX_EXECUTION_TIMEOUT_S: i64 = 43_200;
const PARAMETER_PREFIX: &str = "${aws:iot:commandexecution::parameter:";
const TIMEOUT_PLACEHOLDER: &str = "${aws:iot:commandexecution::executionTimeoutSec}";

#[derive(Debug, Clone)]
struct Command {
    id: String,
    display_name: Option<String>,
    description: Option<String>,
    payload: Option<(Vec<u8>, Option<String>)>,
    payload_template: Option<String>,
    preprocessor: Option<Value>,
    mandatory_parameters: Vec<Value>,
    created_at: i64,
    last_updated_at: i64,
    deprecated: bool,
    deprecated_at: Option<i64>,
    pending_deletion: bool,
}

#[derive(Debug, Clone)]
struct Execution {
    id: String,
    command_id: String,
    target_arn: String,
    kind: TargetKind,
    target: DeviceId,
    status: ExecutionStatus,
    source: Source,
    reason: Option<StatusReason>,
    result: Option<BTreeMap<String, ResultValue>>,
    parameters: Option<Value>,
    timeout_s: i64,
    created_at: i64,
    last_updated_at: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
}

#[derive(Debug, Default)]
struct State {
    commands: BTreeMap<String, Command>,
    executions: HashMap<String, Execution>,
    /// clientToken → (fingerprint of the request, execution id)
    tokens: HashMap<String, (u64, String)>,
}

/// The Commands service.
#[derive(Clone)]
pub struct Commands {
    state: Arc<Mutex<State>>,
    account: Account,
    publisher: Link,
    deletion_grace: Duration,
}

fn secs(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn text_field<'a>(body: &'a Value, name: &str, max: usize) -> Result<Option<&'a str>, AwsError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.chars().count() <= max => Ok(Some(text)),
        Some(Value::String(_)) => Err(AwsError::validation(format!(
            "{name} must be at most {max} characters"
        ))),
        Some(_) => Err(AwsError::validation(format!("{name} must be a string"))),
    }
}

/// Checks one CommandParameterValue (`{"S": ..}`, `{"B": ..}`, ...): exactly one member.
fn check_parameter_value(name: &str, value: &Value) -> Result<(), AwsError> {
    let bad = || {
        AwsError::validation(format!(
            "parameter {name}: a value has exactly one of S, B, I, L, D, BIN, UL"
        ))
    };
    let object = value.as_object().filter(|o| o.len() == 1).ok_or_else(bad)?;
    let (kind, inner) = object.iter().next().ok_or_else(bad)?;
    let ok = match kind.as_str() {
        "S" => inner.is_string(),
        "B" => inner.is_boolean(),
        "I" => inner.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
        "L" => inner.is_i64() || inner.is_u64(),
        "D" => inner.is_number(),
        "BIN" => inner.as_str().is_some_and(|b| BASE64.decode(b).is_ok()),
        "UL" => inner
            .as_str()
            .is_some_and(|u| u.len() <= 20 && u.parse::<u64>().is_ok()),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The JSON a parameter value stands for in a rendered payload.
fn parameter_json(value: &Value) -> Value {
    match value.as_object().and_then(|o| o.iter().next()) {
        Some((kind, inner)) if kind == "UL" => inner
            .as_str()
            .and_then(|u| u.parse::<u64>().ok())
            .map(Value::from)
            .unwrap_or(Value::Null),
        Some((_, inner)) => inner.clone(),
        None => Value::Null,
    }
}

/// Substitutes the placeholders of a payload template. A string that is exactly one
/// placeholder becomes the typed value; placeholders inside longer strings become text.
fn render(
    template: &Value,
    parameters: &Map<String, Value>,
    timeout_s: i64,
) -> Result<Value, AwsError> {
    let lookup = |placeholder: &str| -> Result<Value, AwsError> {
        if placeholder == TIMEOUT_PLACEHOLDER {
            return Ok(json!(timeout_s));
        }
        let name = placeholder
            .strip_prefix(PARAMETER_PREFIX)
            .and_then(|rest| rest.strip_suffix('}'))
            .ok_or_else(|| AwsError::validation(format!("unknown placeholder {placeholder}")))?;
        parameters
            .get(name)
            .map(parameter_json)
            .ok_or_else(|| AwsError::validation(format!("no value for parameter {name}")))
    };
    Ok(match template {
        Value::String(text) => {
            if text.starts_with("${") && text.ends_with('}') && text.matches("${").count() == 1 {
                lookup(text)?
            } else {
                let mut out = String::new();
                let mut rest = text.as_str();
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let end = rest[start..]
                        .find('}')
                        .ok_or_else(|| AwsError::validation("unterminated placeholder"))?
                        + start;
                    let value = lookup(&rest[start..=end])?;
                    out.push_str(&match value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    });
                    rest = &rest[end + 1..];
                }
                out.push_str(rest);
                Value::String(out)
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render(i, parameters, timeout_s))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| Ok((k.clone(), render(v, parameters, timeout_s)?)))
                .collect::<Result<_, AwsError>>()?,
        ),
        other => other.clone(),
    })
}

/// A time filter of ListCommandExecutions: (after, before), epoch ms, both inclusive.
type Window = (Option<i64>, Option<i64>);

/// Pages a sorted list by the id of the last item returned.
fn paginate<T>(
    items: Vec<T>,
    id: impl Fn(&T) -> &str,
    max: usize,
    token: Option<&str>,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let start = match token {
        Some(token) => {
            let last = BASE64
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| AwsError::validation("invalid nextToken"))?;
            items
                .iter()
                .position(|i| id(i) == last)
                .map(|p| p + 1)
                .ok_or_else(|| AwsError::validation("invalid nextToken"))?
        }
        None => 0,
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = (start + page.len() < total)
        .then(|| page.last().map(|i| BASE64.encode(id(i))))
        .flatten();
    Ok((page, next))
}

fn max_results(query: &HashMap<String, String>) -> Result<usize, AwsError> {
    match query.get("maxResults") {
        None => Ok(100),
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|m| (1..=100).contains(m))
            .ok_or_else(|| AwsError::validation("maxResults must be between 1 and 100")),
    }
}

fn descending(sort: Option<&str>) -> Result<bool, AwsError> {
    match sort {
        None | Some("ASCENDING") => Ok(false),
        Some("DESCENDING") => Ok(true),
        Some(other) => Err(AwsError::validation(format!(
            "sortOrder {other} is not ASCENDING or DESCENDING"
        ))),
    }
}

impl Commands {
    pub fn new(account: Account, publisher: Link, deletion_grace: Duration) -> Self {
        Self {
            state: Arc::default(),
            account,
            publisher,
            deletion_grace,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn publish_all(&self, messages: Vec<Outgoing>) {
        for message in messages {
            tracing::debug!(topic = %message.topic, "publish");
            if let Err(err) = self.publisher.publish(message).await {
                tracing::warn!(error = %err, "could not publish");
            }
        }
    }

    fn command_json(&self, c: &Command) -> Value {
        let mut out = json!({
            "commandId": c.id,
            "commandArn": self.account.arn(&format!("command/{}", c.id)),
            "namespace": "AWS-IoT",
            "createdAt": secs(c.created_at),
            "lastUpdatedAt": secs(c.last_updated_at),
            "deprecated": c.deprecated,
            "pendingDeletion": c.pending_deletion,
        });
        let o = out.as_object_mut().expect("object");
        if let Some(v) = &c.display_name {
            o.insert("displayName".into(), json!(v));
        }
        if let Some(v) = &c.description {
            o.insert("description".into(), json!(v));
        }
        if let Some((content, content_type)) = &c.payload {
            let mut payload = json!({ "content": BASE64.encode(content) });
            if let Some(ct) = content_type {
                payload["contentType"] = json!(ct);
            }
            o.insert("payload".into(), payload);
        }
        if let Some(v) = &c.payload_template {
            o.insert("payloadTemplate".into(), json!(v));
        }
        if let Some(v) = &c.preprocessor {
            o.insert("preprocessor".into(), v.clone());
        }
        if !c.mandatory_parameters.is_empty() {
            o.insert("mandatoryParameters".into(), json!(c.mandatory_parameters));
        }
        out
    }

    /// CreateCommand: `PUT /commands/{commandId}`.
    pub fn create_command(&self, id: &str, body: &Value) -> Result<Value, AwsError> {
        CommandId::parse(id).map_err(|e| AwsError::validation(e.to_string()))?;
        match body.get("namespace").and_then(Value::as_str) {
            None | Some("AWS-IoT") => {}
            Some(other) => {
                return Err(AwsError::validation(format!(
                    "namespace {other} is not supported by local-iot (only AWS-IoT)"
                )))
            }
        }
        let display_name = text_field(body, "displayName", 64)?.map(str::to_owned);
        let description = text_field(body, "description", 2028)?.map(str::to_owned);
        let payload = match body.get("payload") {
            None | Some(Value::Null) => None,
            Some(p) => {
                let content = p
                    .get("content")
                    .and_then(Value::as_str)
                    .ok_or_else(|| AwsError::validation("payload.content is required"))?;
                let bytes = BASE64
                    .decode(content)
                    .map_err(|_| AwsError::validation("payload.content must be base64"))?;
                if bytes.len() > MAX_COMMAND_PAYLOAD {
                    return Err(AwsError::validation(
                        "payload.content must be at most 32 KB",
                    ));
                }
                let content_type = p
                    .get("contentType")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                Some((bytes, content_type))
            }
        };
        let payload_template =
            text_field(body, "payloadTemplate", MAX_COMMAND_PAYLOAD)?.map(str::to_owned);
        let preprocessor = body.get("preprocessor").filter(|p| !p.is_null()).cloned();
        let mandatory_parameters = match body.get("mandatoryParameters") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(list)) if !list.is_empty() => list.clone(),
            Some(_) => {
                return Err(AwsError::validation(
                    "mandatoryParameters must be a non-empty list",
                ))
            }
        };
        for p in &mandatory_parameters {
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            let name_ok = (1..=192).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._$-".contains(&b));
            if !name_ok {
                return Err(AwsError::validation(
                    "mandatoryParameters[].name must be 1-192 characters of [.$a-zA-Z0-9_-]",
                ));
            }
            if let Some(default) = p.get("defaultValue") {
                check_parameter_value(name, default)?;
            }
        }
        match (&payload, &payload_template) {
            (Some(_), Some(_)) => {
                return Err(AwsError::validation(
                    "give payload or payloadTemplate, not both",
                ))
            }
            (None, None) => {
                return Err(AwsError::validation(
                    "a command needs a payload or a payloadTemplate",
                ))
            }
            (None, Some(template)) => {
                let parsed: Value = serde_json::from_str(template)
                    .map_err(|_| AwsError::validation("payloadTemplate must be valid JSON"))?;
                if !template.contains("${aws:iot:commandexecution::") {
                    return Err(AwsError::validation(
                        "payloadTemplate must contain at least one placeholder",
                    ));
                }
                let format = preprocessor
                    .as_ref()
                    .and_then(|p| p.pointer("/awsJsonSubstitution/outputFormat"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        AwsError::validation(
                            "a payloadTemplate needs preprocessor.awsJsonSubstitution.outputFormat",
                        )
                    })?;
                if format != "JSON" {
                    return Err(AwsError::validation(format!(
                        "outputFormat {format} is not supported by local-iot (only JSON)"
                    )));
                }
                if mandatory_parameters.is_empty() {
                    return Err(AwsError::validation(
                        "a payloadTemplate needs mandatoryParameters",
                    ));
                }
                drop(parsed);
            }
            (Some(_), None) => {}
        }
        let now = now_ms();
        let mut state = self.lock();
        if state.commands.contains_key(id) {
            return Err(AwsError::conflict(format!("command {id} already exists")));
        }
        state.commands.insert(
            id.to_owned(),
            Command {
                id: id.to_owned(),
                display_name,
                description,
                payload,
                payload_template,
                preprocessor,
                mandatory_parameters,
                created_at: now,
                last_updated_at: now,
                deprecated: false,
                deprecated_at: None,
                pending_deletion: false,
            },
        );
        tracing::debug!(command = id, "CreateCommand");
        Ok(json!({ "commandId": id, "commandArn": self.account.arn(&format!("command/{id}")) }))
    }

    /// GetCommand.
    pub fn get_command(&self, id: &str) -> Result<Value, AwsError> {
        let state = self.lock();
        let command = state
            .commands
            .get(id)
            .ok_or_else(|| AwsError::not_found(format!("command {id} not found")))?;
        Ok(self.command_json(command))
    }

    /// ListCommands.
    pub fn list_commands(&self, query: &HashMap<String, String>) -> Result<Value, AwsError> {
        let max = max_results(query)?;
        let desc = descending(query.get("sortOrder").map(String::as_str))?;
        if let Some(ns) = query.get("namespace").filter(|ns| *ns != "AWS-IoT") {
            return Err(AwsError::validation(format!(
                "namespace {ns} is not supported by local-iot"
            )));
        }
        let state = self.lock();
        let mut commands: Vec<&Command> = state
            .commands
            .values()
            .filter(|c| !c.pending_deletion)
            .filter(|c| match query.get("commandParameterName") {
                Some(name) => c
                    .mandatory_parameters
                    .iter()
                    .any(|p| p.get("name").and_then(Value::as_str) == Some(name)),
                None => true,
            })
            .collect();
        commands.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        if desc {
            commands.reverse();
        }
        let (page, next) = paginate(
            commands,
            |c| c.id.as_str(),
            max,
            query.get("nextToken").map(String::as_str),
        )?;
        let summaries: Vec<Value> = page
            .iter()
            .map(|c| {
                let full = self.command_json(c);
                json!({
                    "commandArn": full["commandArn"], "commandId": c.id, "displayName": c.display_name,
                    "deprecated": c.deprecated, "createdAt": full["createdAt"], "lastUpdatedAt": full["lastUpdatedAt"],
                    "pendingDeletion": c.pending_deletion,
                })
            })
            .collect();
        let mut out = json!({ "commands": summaries });
        if let Some(next) = next {
            out["nextToken"] = json!(next);
        }
        Ok(out)
    }

    /// UpdateCommand: display name, description, deprecation.
    pub fn update_command(&self, id: &str, body: &Value) -> Result<Value, AwsError> {
        let display_name = text_field(body, "displayName", 64)?.map(str::to_owned);
        let description = text_field(body, "description", 2028)?.map(str::to_owned);
        let deprecated = match body.get("deprecated") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(AwsError::validation("deprecated must be a boolean")),
        };
        let now = now_ms();
        let mut state = self.lock();
        let command = state
            .commands
            .get_mut(id)
            .ok_or_else(|| AwsError::not_found(format!("command {id} not found")))?;
        if command.pending_deletion {
            return Err(AwsError::conflict(format!(
                "command {id} is pending deletion"
            )));
        }
        if let Some(v) = display_name {
            command.display_name = Some(v);
        }
        if let Some(v) = description {
            command.description = Some(v);
        }
        if let Some(d) = deprecated {
            if d && !command.deprecated {
                command.deprecated_at = Some(now);
            }
            if !d {
                command.deprecated_at = None;
            }
            command.deprecated = d;
        }
        command.last_updated_at = now;
        Ok(json!({
            "commandId": id, "displayName": command.display_name, "description": command.description,
            "deprecated": command.deprecated, "lastUpdatedAt": secs(now),
        }))
    }

    /// DeleteCommand: 204 when deprecated for longer than the grace period (AWS: 12 h), else
    /// 202 and the command waits in `pendingDeletion`.
    pub fn delete_command(&self, id: &str) -> Result<u16, AwsError> {
        let now = now_ms();
        let mut state = self.lock();
        let Some(command) = state.commands.get_mut(id) else {
            return Ok(204);
        };
        let grace_over = command
            .deprecated_at
            .is_some_and(|at| now - at >= self.deletion_grace.as_millis() as i64);
        if grace_over {
            state.commands.remove(id);
            Ok(204)
        } else {
            command.pending_deletion = true;
            Ok(202)
        }
    }

    fn execution_json(&self, e: &Execution, include_result: bool) -> Value {
        let mut out = json!({
            "executionId": e.id,
            "commandArn": self.account.arn(&format!("command/{}", e.command_id)),
            "targetArn": e.target_arn,
            "status": e.status.as_str(),
            "executionTimeoutSeconds": e.timeout_s,
            "createdAt": secs(e.created_at),
            "lastUpdatedAt": secs(e.last_updated_at),
            "timeToLive": secs(e.created_at + 182 * 24 * 3600 * 1000),
        });
        let o = out.as_object_mut().expect("object");
        if let Some(r) = &e.reason {
            o.insert("statusReason".into(), json!(r));
        }
        if let Some(p) = &e.parameters {
            o.insert("parameters".into(), p.clone());
        }
        if let Some(t) = e.started_at {
            o.insert("startedAt".into(), secs(t));
        }
        if let Some(t) = e.completed_at {
            o.insert("completedAt".into(), secs(t));
        }
        if include_result {
            if let Some(result) = &e.result {
                o.insert(
                    "result".into(),
                    Value::Object(
                        result
                            .iter()
                            .map(|(k, v)| (k.clone(), v.to_api()))
                            .collect(),
                    ),
                );
            }
        }
        out
    }

    fn event(&self, e: &Execution, at_ms: i64) -> Outgoing {
        let topic = ExecutionEventTopic {
            command: CommandId::parse(&e.command_id).expect("stored command ids are valid"),
            status: e.status,
        };
        let mut payload = json!({
            "executionId": e.id,
            "status": e.status.as_str(),
            "eventType": "COMMAND_EXECUTION",
            "commandArn": self.account.arn(&format!("command/{}", e.command_id)),
            "targetArn": e.target_arn,
            "timestamp": at_ms,
        });
        if let Some(reason) = &e.reason {
            payload["statusReason"] = json!(reason);
        }
        Outgoing {
            topic: topic.to_string(),
            payload: payload.to_string().into(),
            qos: 1,
            ..Default::default()
        }
    }

    /// StartCommandExecution (iot-jobs-data): `POST /command-executions`.
    pub async fn start_execution(&self, body: &Value) -> Result<Value, AwsError> {
        let field = |name: &str| body.get(name).and_then(Value::as_str);
        let target_arn = field("targetArn")
            .ok_or_else(|| AwsError::validation("targetArn is required"))?
            .to_owned();
        let command_arn =
            field("commandArn").ok_or_else(|| AwsError::validation("commandArn is required"))?;
        let command_id = match arn_resource(command_arn) {
            Some(("command", id)) => id.to_owned(),
            _ => {
                return Err(AwsError::validation(format!(
                    "commandArn {command_arn} is not a command ARN"
                )))
            }
        };
        let (kind, target) = match arn_resource(&target_arn) {
            Some(("thing", name)) => (TargetKind::Thing, name),
            Some(("client", id)) => (TargetKind::Client, id),
            _ => {
                return Err(AwsError::validation(format!(
                    "targetArn {target_arn} is not a thing or client ARN"
                )))
            }
        };
        let target =
            DeviceId::parse(target).map_err(|e| AwsError::validation(format!("targetArn: {e}")))?;
        let timeout_s = match body.get("executionTimeoutSeconds") {
            None | Some(Value::Null) => DEFAULT_EXECUTION_TIMEOUT_S,
            Some(v) => v
                .as_i64()
                .filter(|t| (1..=MAX_EXECUTION_TIMEOUT_S).contains(t))
                .ok_or_else(|| {
                    AwsError::validation("executionTimeoutSeconds must be between 1 and 43200")
                })?,
        };
        let parameters = match body.get("parameters") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) if !map.is_empty() => map.clone(),
            Some(_) => return Err(AwsError::validation("parameters must be a non-empty map")),
        };
        for (name, value) in &parameters {
            check_parameter_value(name, value)?;
        }
        let token = match body.get("clientToken") {
            None | Some(Value::Null) => None,
            Some(Value::String(t))
                if (1..=64).contains(&t.len()) && t.bytes().all(|b| (0x21..=0x7e).contains(&b)) =>
            {
                Some(t.clone())
            }
            Some(_) => {
                return Err(AwsError::validation(
                    "clientToken must be 1-64 printable ASCII characters",
                ))
            }
        };
        let request_print = fingerprint(&[
            &target_arn,
            command_arn,
            &Value::Object(parameters.clone()).to_string(),
            &timeout_s.to_string(),
        ]);

        let now = now_ms();
        let execution_id = ExecutionId::random().into_string();
        let (execution, request) = {
            let mut state = self.lock();
            if let Some(token) = &token {
                if let Some((print, existing)) = state.tokens.get(token) {
                    return if *print == request_print {
                        Ok(json!({ "executionId": existing }))
                    } else {
                        Err(AwsError::conflict(
                            "clientToken was used with different parameters",
                        ))
                    };
                }
            }
            let command = state
                .commands
                .get(&command_id)
                .filter(|c| !c.pending_deletion)
                .ok_or_else(|| AwsError::not_found(format!("command {command_id} not found")))?;
            if command.deprecated {
                return Err(AwsError::validation(format!(
                    "command {command_id} is deprecated"
                )));
            }
            let (payload, content_type) = match (&command.payload, &command.payload_template) {
                (Some((content, content_type)), _) => (
                    content.clone(),
                    content_type
                        .clone()
                        .unwrap_or_else(|| "application/octet-stream".into()),
                ),
                (None, Some(template)) => {
                    let mut values = Map::new();
                    for p in &command.mandatory_parameters {
                        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
                        let value = parameters
                            .get(name)
                            .or_else(|| p.get("defaultValue"))
                            .ok_or_else(|| {
                                AwsError::validation(format!(
                                    "parameter {name} has no value and no default"
                                ))
                            })?;
                        values.insert(name.to_owned(), value.clone());
                    }
                    let template: Value = serde_json::from_str(template)
                        .map_err(|_| AwsError::validation("stored payloadTemplate is not JSON"))?;
                    let rendered = render(&template, &values, timeout_s)?;
                    (
                        rendered.to_string().into_bytes(),
                        "application/json".to_owned(),
                    )
                }
                (None, None) => return Err(AwsError::validation("command has no payload")),
            };
            let execution = Execution {
                id: execution_id.clone(),
                command_id: command_id.clone(),
                target_arn: target_arn.clone(),
                kind,
                target: target.clone(),
                status: ExecutionStatus::Created,
                source: Source::Cloud,
                reason: None,
                result: None,
                parameters: (!parameters.is_empty()).then(|| Value::Object(parameters.clone())),
                timeout_s,
                created_at: now,
                last_updated_at: now,
                started_at: None,
                completed_at: None,
            };
            state
                .executions
                .insert(execution_id.clone(), execution.clone());
            if let Some(token) = token {
                state
                    .tokens
                    .insert(token, (request_print, execution_id.clone()));
            }
            let topic = CommandTopic::new(
                kind,
                target,
                ExecutionId::parse(&execution_id).expect("generated ids are valid"),
                CommandAction::Request(PayloadFormat::from_content_type(Some(&content_type))),
            );
            let request = Outgoing {
                topic: topic.to_string(),
                payload: payload.into(),
                qos: 1,
                retain: false,
                properties: PublishProperties {
                    content_type: Some(content_type),
                    message_expiry_interval: Some(timeout_s as u32),
                    ..Default::default()
                },
            };
            (execution, request)
        };
        tracing::debug!(execution = %execution.id, command = %command_id, target = %target_arn, "StartCommandExecution");
        let created = self.event(&execution, now);
        self.publish_all(vec![created, request]).await;

        let this = self.clone();
        let id = execution.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(timeout_s as u64)).await;
            this.time_out(&id).await;
        });
        Ok(json!({ "executionId": execution_id }))
    }

    /// The cloud-side timeout: CREATED or IN_PROGRESS becomes TIMED_OUT with
    /// `$NO_RESPONSE_FROM_DEVICE`; `completedAt` stays unset; a late device report still wins.
    async fn time_out(&self, id: &str) {
        let now = now_ms();
        let event = {
            let mut state = self.lock();
            let Some(e) = state.executions.get_mut(id) else {
                return;
            };
            if e.status.phase(e.source) >= Phase::CloudTimedOut {
                return;
            }
            e.status = ExecutionStatus::TimedOut;
            e.source = Source::Cloud;
            e.reason = Some(StatusReason::new(NO_RESPONSE_FROM_DEVICE, None));
            e.last_updated_at = now;
            let e = e.clone();
            self.event(&e, now)
        };
        tracing::debug!(execution = id, "execution timed out");
        self.publish_all(vec![event]).await;
    }

    /// A device's message on `$aws/commands/.../response/{json|cbor}`: validated, applied,
    /// answered on the accepted or rejected topic, and announced as an event.
    pub async fn device_response(&self, message: &Message) {
        let Ok(topic) = CommandTopic::parse(&message.topic) else {
            tracing::debug!(topic = %message.topic, "ignoring a message on a malformed Commands topic");
            return;
        };
        let now = now_ms();
        let outcome = self.apply_response(&topic, &message.payload, now);
        let mut messages = Vec::new();
        let ack = match outcome {
            Ok(execution) => {
                messages.push(self.event(&execution, now));
                Outgoing {
                    topic: topic.with_action(CommandAction::Accepted).to_string(),
                    payload: json!({ "executionId": execution.id }).to_string().into(),
                    qos: 1,
                    ..Default::default()
                }
            }
            Err((code, text)) => {
                tracing::debug!(topic = %message.topic, code, "device response rejected");
                Outgoing {
                    topic: topic.with_action(CommandAction::Rejected).to_string(),
                    payload: json!({ "error": code, "errorMessage": text, "executionId": topic.execution.as_str() })
                        .to_string()
                        .into(),
                    qos: 1,
                    ..Default::default()
                }
            }
        };
        messages.insert(0, ack);
        self.publish_all(messages).await;
    }

    fn apply_response(
        &self,
        topic: &CommandTopic,
        payload: &[u8],
        now: i64,
    ) -> Result<Execution, (&'static str, String)> {
        if topic.action == CommandAction::Response(ResponseFormat::Cbor) {
            return Err((
                "InvalidRequest",
                "local-iot does not decode CBOR responses; answer on .../response/json".into(),
            ));
        }
        let response = CommandResponse::parse(payload).map_err(|e| (e.code(), e.to_string()))?;
        let mut state = self.lock();
        let e = state
            .executions
            .get_mut(topic.execution.as_str())
            .filter(|e| e.kind == topic.kind && e.target == topic.device)
            .ok_or_else(|| {
                (
                    "ResourceNotFound",
                    format!("execution {} not found for this device", topic.execution),
                )
            })?;
        check_transition(e.status, e.source, response.status, Source::Device)
            .map_err(|err| (err.code(), err.to_string()))?;
        e.status = response.status;
        e.source = Source::Device;
        e.reason = response.status_reason.clone();
        if response.result.is_some() {
            e.result = response.result.clone();
        }
        e.last_updated_at = now;
        e.started_at.get_or_insert(now);
        if response.status.phase(Source::Device).is_terminal() {
            e.completed_at = Some(now);
        }
        Ok(e.clone())
    }

    fn find_execution(&self, id: &str, target_arn: Option<&str>) -> Result<Execution, AwsError> {
        let target_arn = target_arn.ok_or_else(|| AwsError::validation("targetArn is required"))?;
        let state = self.lock();
        state
            .executions
            .get(id)
            .filter(|e| e.target_arn == target_arn)
            .cloned()
            .ok_or_else(|| {
                AwsError::not_found(format!("execution {id} not found for {target_arn}"))
            })
    }

    /// GetCommandExecution.
    pub fn get_execution(
        &self,
        id: &str,
        query: &HashMap<String, String>,
    ) -> Result<Value, AwsError> {
        let execution = self.find_execution(id, query.get("targetArn").map(String::as_str))?;
        let include = query.get("includeResult").is_some_and(|v| v == "true");
        Ok(self.execution_json(&execution, include))
    }

    /// DeleteCommandExecution: only a terminal execution can be deleted.
    pub fn delete_execution(
        &self,
        id: &str,
        query: &HashMap<String, String>,
    ) -> Result<(), AwsError> {
        let execution = self.find_execution(id, query.get("targetArn").map(String::as_str))?;
        if !execution.status.phase(execution.source).is_terminal() {
            return Err(AwsError::conflict(format!(
                "execution {id} is not in a terminal state"
            )));
        }
        self.lock().executions.remove(id);
        Ok(())
    }

    /// ListCommandExecutions (iot): `POST /command-executions` with filters in the body.
    pub fn list_executions(
        &self,
        query: &HashMap<String, String>,
        body: &Value,
    ) -> Result<Value, AwsError> {
        let max = max_results(query)?;
        let field = |name: &str| body.get(name).and_then(Value::as_str);
        let desc = descending(field("sortOrder"))?;
        let (target, command) = (field("targetArn"), field("commandArn"));
        if target.is_some() && command.is_some() {
            return Err(AwsError::validation(
                "give targetArn or commandArn, not both",
            ));
        }
        let status = field("status")
            .map(|s| {
                ExecutionStatus::parse(s)
                    .ok_or_else(|| AwsError::validation(format!("status {s} is not valid")))
            })
            .transpose()?;
        let window = |name: &str| -> Result<Option<Window>, AwsError> {
            let Some(filter) = body.get(name).filter(|f| !f.is_null()) else {
                return Ok(None);
            };
            let bound = |key: &str| {
                filter
                    .get(key)
                    .and_then(Value::as_str)
                    .map(|t| {
                        parse_rfc3339(&format!("{t}:00Z")).ok_or_else(|| {
                            AwsError::validation(format!(
                                "{name}.{key} must look like yyyy-MM-ddTHH:mm"
                            ))
                        })
                    })
                    .transpose()
            };
            Ok(Some((bound("after")?, bound("before")?)))
        };
        let (started, completed) = (window("startedTimeFilter")?, window("completedTimeFilter")?);
        if started.is_some() && completed.is_some() {
            return Err(AwsError::validation(
                "give startedTimeFilter or completedTimeFilter, not both",
            ));
        }
        let within = |at: Option<i64>, w: Option<Window>| match w {
            None => true,
            Some((after, before)) => {
                at.is_some_and(|t| after.is_none_or(|a| t >= a) && before.is_none_or(|b| t <= b))
            }
        };
        let state = self.lock();
        let mut executions: Vec<&Execution> = state
            .executions
            .values()
            .filter(|e| target.is_none_or(|t| e.target_arn == t))
            .filter(|e| {
                command.is_none_or(|c| arn_resource(c) == Some(("command", e.command_id.as_str())))
            })
            .filter(|e| status.is_none_or(|s| e.status == s))
            .filter(|e| within(e.started_at, started) && within(e.completed_at, completed))
            .collect();
        executions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        if desc {
            executions.reverse();
        }
        let (page, next) = paginate(
            executions,
            |e| e.id.as_str(),
            max,
            query.get("nextToken").map(String::as_str),
        )?;
        let summaries: Vec<Value> = page
            .iter()
            .map(|e| {
                let full = self.execution_json(e, false);
                json!({
                    "commandArn": full["commandArn"], "executionId": e.id, "targetArn": e.target_arn,
                    "status": e.status.as_str(), "createdAt": full["createdAt"],
                    "startedAt": full.get("startedAt"), "completedAt": full.get("completedAt"),
                })
            })
            .collect();
        let mut out = json!({ "commandExecutions": summaries });
        if let Some(next) = next {
            out["nextToken"] = json!(next);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_string_placeholders_keep_their_type() {
        let template = json!({
            "door": "${aws:iot:commandexecution::parameter:door}",
            "open": "${aws:iot:commandexecution::parameter:open}",
            "label": "door ${aws:iot:commandexecution::parameter:door} in ${aws:iot:commandexecution::executionTimeoutSec}s",
            "list": ["${aws:iot:commandexecution::parameter:count}"],
        });
        let parameters: Map<String, Value> = serde_json::from_value(json!({
            "door": {"S": "front"}, "open": {"B": true}, "count": {"UL": "18446744073709551615"},
        }))
        .unwrap();
        let rendered = render(&template, &parameters, 30).unwrap();
        assert_eq!(
            rendered,
            json!({"door": "front", "open": true, "label": "door front in 30s", "list": [18_446_744_073_709_551_615u64]})
        );
    }

    #[test]
    fn a_missing_parameter_is_a_validation_error() {
        let template = json!({"x": "${aws:iot:commandexecution::parameter:nope}"});
        assert_eq!(
            render(&template, &Map::new(), 1).unwrap_err().kind,
            "ValidationException"
        );
    }

    #[test]
    fn parameter_values_have_exactly_one_member() {
        for good in [
            json!({"S": "x"}),
            json!({"B": false}),
            json!({"I": 5}),
            json!({"L": 5_000_000_000i64}),
            json!({"D": 1.5}),
            json!({"BIN": "AAE="}),
            json!({"UL": "12"}),
        ] {
            assert!(check_parameter_value("p", &good).is_ok(), "{good}");
        }
        for bad in [
            json!({}),
            json!({"S": 1}),
            json!({"S": "a", "B": true}),
            json!({"I": 5_000_000_000i64}),
            json!({"X": 1}),
            json!("S"),
            json!({"UL": "-1"}),
        ] {
            assert!(check_parameter_value("p", &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_follow_the_last_id() {
        let items: Vec<String> = (0..5).map(|i| format!("c{i}")).collect();
        let (first, next) = paginate(items.clone(), |s| s.as_str(), 2, None).unwrap();
        assert_eq!(first, ["c0", "c1"]);
        let (second, next) = paginate(items.clone(), |s| s.as_str(), 2, next.as_deref()).unwrap();
        assert_eq!(second, ["c2", "c3"]);
        let (third, next) = paginate(items.clone(), |s| s.as_str(), 2, next.as_deref()).unwrap();
        assert_eq!(third, ["c4"]);
        assert_eq!(next, None);
        assert!(paginate(items, |s| s.as_str(), 2, Some("garbage!")).is_err());
    }
}
