//! Command resources: CreateCommand, GetCommand, ListCommands, UpdateCommand and DeleteCommand.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Value};

use tether_domain::clock::now_ms;
use tether_domain::CommandId;

use super::paging::{descending, max_results, paginate};
use super::payload::{check_mandatory_parameters, check_payload_template};
use super::secs;
use super::state::{Command, Commands, StaticPayload};
use crate::aws::AwsError;

/// Largest static payload or payload template (AWS: 32 KB).
const MAX_COMMAND_PAYLOAD: usize = 32 * 1024;

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

/// A new command's static `payload`: its bytes (sent base64) and content type.
fn static_payload(body: &Value) -> Result<Option<StaticPayload>, AwsError> {
    let p = match body.get("payload") {
        None | Some(Value::Null) => return Ok(None),
        Some(p) => p,
    };
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
    Ok(Some((bytes, content_type)))
}

/// A new command's `mandatoryParameters`: absent, or a non-empty list of valid parameters.
fn mandatory_parameters(body: &Value) -> Result<Vec<Value>, AwsError> {
    let parameters = match body.get("mandatoryParameters") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(list)) if !list.is_empty() => list.clone(),
        Some(_) => {
            return Err(AwsError::validation(
                "mandatoryParameters must be a non-empty list",
            ))
        }
    };
    check_mandatory_parameters(&parameters)?;
    Ok(parameters)
}

/// Reads the body of CreateCommand into a command, checking it in the order AWS does.
fn new_command(id: &str, body: &Value, now: i64) -> Result<Command, AwsError> {
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
    let payload = static_payload(body)?;
    let payload_template =
        text_field(body, "payloadTemplate", MAX_COMMAND_PAYLOAD)?.map(str::to_owned);
    let preprocessor = body.get("preprocessor").filter(|p| !p.is_null()).cloned();
    let mandatory_parameters = mandatory_parameters(body)?;
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
            check_payload_template(template, preprocessor.as_ref(), &mandatory_parameters)?
        }
        (Some(_), None) => {}
    }
    Ok(Command {
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
    })
}

impl Commands {
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
        let now = now_ms();
        let command = new_command(id, body, now)?;
        let mut state = self.lock();
        if state.commands.contains_key(id) {
            return Err(AwsError::conflict(format!("command {id} already exists")));
        }
        state.commands.insert(id.to_owned(), command);
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
}
