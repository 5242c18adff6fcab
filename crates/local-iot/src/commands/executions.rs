//! Command executions while they run: StartCommandExecution (checked, recorded, sent to the
//! device), the cloud-side timeout, the device's responses, and the execution events that
//! announce each status.

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::{json, Map, Value};

use tether_domain::clock::now_ms;
use tether_domain::reply::CommandResponse;
use tether_domain::status::{check_transition, fingerprint, Lifecycle, NO_RESPONSE_FROM_DEVICE};
use tether_domain::topics::{
    CommandAction, CommandTopic, ExecutionEventTopic, PayloadFormat, ResponseFormat, TargetKind,
};
use tether_domain::{
    CommandId, DeviceId, ExecutionId, ExecutionStatus, Phase, Source, StatusReason,
};

use super::payload::{check_parameter_value, request_payload};
use super::state::{Command, Commands, Execution, State};
use crate::aws::{arn_resource, AwsError};
use crate::link::{Message, Outgoing};

/// Default and largest execution timeout (AWS: 10 s and 12 h).
const DEFAULT_EXECUTION_TIMEOUT_S: i64 = 10;
const MAX_EXECUTION_TIMEOUT_S: i64 = 43_200;

/// A StartCommandExecution request, checked.
struct StartRequest {
    target_arn: String,
    command_id: String,
    kind: TargetKind,
    target: DeviceId,
    timeout_s: i64,
    parameters: Map<String, Value>,
    token: Option<String>,
    /// What the request asks for, to tell a retry from another request with the same token.
    print: u64,
}

/// What recording a StartCommandExecution did.
enum Started {
    /// The client token's earlier execution: nothing new was started.
    Again(String),
    /// A new execution, and the request to send its device.
    New(Box<Execution>, Outgoing),
}

impl StartRequest {
    /// Reads the request body, checking its members in the order AWS does.
    fn parse(body: &Value) -> Result<Self, AwsError> {
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
        let (kind, target) = target_of(&target_arn)?;
        let timeout_s = execution_timeout(body)?;
        let parameters = parameters(body)?;
        let token = client_token(body)?;
        let print = fingerprint(&[
            &target_arn,
            command_arn,
            &Value::Object(parameters.clone()).to_string(),
            &timeout_s.to_string(),
        ]);
        Ok(Self {
            target_arn,
            command_id,
            kind,
            target,
            timeout_s,
            parameters,
            token,
            print,
        })
    }

    /// The execution this request starts, as first recorded.
    fn execution(&self, id: String, now: i64) -> Execution {
        Execution {
            id,
            command_id: self.command_id.clone(),
            target_arn: self.target_arn.clone(),
            kind: self.kind,
            target: self.target.clone(),
            status: ExecutionStatus::Created,
            source: Source::Cloud,
            reason: None,
            result: None,
            parameters: (!self.parameters.is_empty())
                .then(|| Value::Object(self.parameters.clone())),
            timeout_s: self.timeout_s,
            created_at: now,
            last_updated_at: now,
            started_at: None,
            completed_at: None,
        }
    }

    /// The execution an earlier request with the same client token started, or a conflict if
    /// that request asked for something else.
    fn earlier(&self, state: &State) -> Result<Option<String>, AwsError> {
        let Some((print, existing)) = self.token.as_ref().and_then(|t| state.tokens.get(t)) else {
            return Ok(None);
        };
        if *print == self.print {
            Ok(Some(existing.clone()))
        } else {
            Err(AwsError::conflict(
                "clientToken was used with different parameters",
            ))
        }
    }
}

/// The device a `targetArn` names: a thing or an MQTT client.
fn target_of(target_arn: &str) -> Result<(TargetKind, DeviceId), AwsError> {
    let (kind, target) = match arn_resource(target_arn) {
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
    Ok((kind, target))
}

fn execution_timeout(body: &Value) -> Result<i64, AwsError> {
    match body.get("executionTimeoutSeconds") {
        None | Some(Value::Null) => Ok(DEFAULT_EXECUTION_TIMEOUT_S),
        Some(v) => v
            .as_i64()
            .filter(|t| (1..=MAX_EXECUTION_TIMEOUT_S).contains(t))
            .ok_or_else(|| {
                AwsError::validation("executionTimeoutSeconds must be between 1 and 43200")
            }),
    }
}

fn parameters(body: &Value) -> Result<Map<String, Value>, AwsError> {
    let parameters = match body.get("parameters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) if !map.is_empty() => map.clone(),
        Some(_) => return Err(AwsError::validation("parameters must be a non-empty map")),
    };
    for (name, value) in &parameters {
        check_parameter_value(name, value)?;
    }
    Ok(parameters)
}

fn client_token(body: &Value) -> Result<Option<String>, AwsError> {
    match body.get("clientToken") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(t))
            if (1..=64).contains(&t.len()) && t.bytes().all(|b| (0x21..=0x7e).contains(&b)) =>
        {
            Ok(Some(t.clone()))
        }
        Some(_) => Err(AwsError::validation(
            "clientToken must be 1-64 printable ASCII characters",
        )),
    }
}

/// The command an execution can start: one that exists, is not being deleted and is not
/// deprecated.
fn startable<'a>(state: &'a State, command_id: &str) -> Result<&'a Command, AwsError> {
    let command = state
        .commands
        .get(command_id)
        .filter(|c| !c.pending_deletion)
        .ok_or_else(|| AwsError::not_found(format!("command {command_id} not found")))?;
    if command.deprecated {
        return Err(AwsError::validation(format!(
            "command {command_id} is deprecated"
        )));
    }
    Ok(command)
}

/// The request an execution sends its device, on the command's request topic; it expires
/// with the execution's timeout.
fn device_request(execution: &Execution, payload: Vec<u8>, content_type: String) -> Outgoing {
    let topic = CommandTopic::new(
        execution.kind,
        execution.target.clone(),
        ExecutionId::parse(&execution.id).expect("generated ids are valid"),
        CommandAction::Request(PayloadFormat::from_content_type(Some(&content_type))),
    );
    Outgoing {
        topic: topic.to_string(),
        payload: payload.into(),
        qos: 1,
        retain: false,
        properties: PublishProperties {
            content_type: Some(content_type),
            message_expiry_interval: Some(execution.timeout_s as u32),
            ..Default::default()
        },
    }
}

impl Commands {
    /// StartCommandExecution (iot-jobs-data): `POST /command-executions`.
    pub async fn start_execution(&self, body: &Value) -> Result<Value, AwsError> {
        let request = StartRequest::parse(body)?;
        let now = now_ms();
        let execution_id = ExecutionId::random().into_string();
        let (execution, device_request) = match self.record_start(&request, execution_id, now)? {
            Started::Again(existing) => return Ok(json!({ "executionId": existing })),
            Started::New(execution, device_request) => (*execution, device_request),
        };
        tracing::debug!(execution = %execution.id, command = %request.command_id, target = %request.target_arn, "StartCommandExecution");
        let created = self.event(&execution, now);
        self.publish_all(vec![created, device_request]).await;

        let this = self.clone();
        let id = execution.id.clone();
        let timeout_s = request.timeout_s;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(timeout_s as u64)).await;
            this.time_out(&id).await;
        });
        Ok(json!({ "executionId": execution.id }))
    }

    /// Records a new execution (and its client token), unless the token's earlier request
    /// already started one.
    fn record_start(
        &self,
        request: &StartRequest,
        execution_id: String,
        now: i64,
    ) -> Result<Started, AwsError> {
        let mut state = self.lock();
        if let Some(existing) = request.earlier(&state)? {
            return Ok(Started::Again(existing));
        }
        let command = startable(&state, &request.command_id)?;
        let (payload, content_type) =
            request_payload(command, &request.parameters, request.timeout_s)?;
        let execution = request.execution(execution_id, now);
        state
            .executions
            .insert(execution.id.clone(), execution.clone());
        if let Some(token) = &request.token {
            state
                .tokens
                .insert(token.clone(), (request.print, execution.id.clone()));
        }
        let message = device_request(&execution, payload, content_type);
        Ok(Started::New(Box::new(execution), message))
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
}
