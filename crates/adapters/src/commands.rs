//! AWS IoT Commands as the functions use it: the control plane (aws-sdk-iot) and
//! StartCommandExecution (aws-sdk-iotjobsdataplane), translated to and from the API's JSON.
//!
//! Two value vocabularies meet here (docs/aws-iot-reference.md §4): parameter values are the AWS
//! union `{"S"|"B"|"I"|"L"|"D"|"BIN"|"UL": ...}` on both sides; results come back from
//! GetCommandExecution with upper-case `S`/`B`/`BIN` and are kept that way.

use aws_sdk_iot::config::http::HttpResponse;
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iot::primitives::{Blob, DateTime, DateTimeFormat};
use aws_sdk_iot::types::{
    AwsJsonSubstitutionCommandPreprocessorConfig, CommandParameter, CommandParameterType,
    CommandParameterValue, CommandPayload, CommandPreprocessor, OutputFormat,
};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};
use tether_domain::api::{
    is_json_content_type, CommandDocument, CreateCommandRequest, Page, UpdateCommandRequest,
};
use tether_domain::clock::excerpt;
use tether_domain::error::Resource;
use tether_domain::{ApiError, CommandId, CommandScope};

use crate::http::{internal, upstream};
use crate::iot::GatewayError;

/// Maps an AWS error to the API: not found (404 for `what`), conflict, validation, throttling
/// and quota (429), and anything else by [`GatewayError`] (503 when transient, else 500).
pub fn api_error<E>(
    operation: &'static str,
    err: SdkError<E, HttpResponse>,
    what: Resource,
    id: &str,
) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (code, message) = match err.as_service_error() {
        Some(e) => (
            e.code().unwrap_or_default().to_owned(),
            e.message().unwrap_or_default().to_owned(),
        ),
        None => (String::new(), String::new()),
    };
    match code.as_str() {
        "ResourceNotFoundException" => ApiError::NotFound {
            what,
            id: id.to_owned(),
        },
        // AWS's own message stays in the log: it names AWS-side ids and wording the API does
        // not promise.
        "ConflictException" => {
            tracing::warn!(operation, aws_message = %excerpt(&message, 200), "AWS IoT: conflict");
            ApiError::Conflict(format!(
                "AWS IoT refused {operation}: it conflicts with the current state of {what} {id}"
            ))
        }
        "ValidationException" | "InvalidRequestException" => {
            tracing::warn!(operation, aws_message = %excerpt(&message, 200), "AWS IoT: invalid request");
            ApiError::Validation(format!("AWS IoT refused {operation} as invalid"))
        }
        "ThrottlingException" | "ServiceQuotaExceededException" | "LimitExceededException" => {
            ApiError::Throttled { retry_after_s: 1 }
        }
        _ => upstream(GatewayError::from_sdk(operation, err)),
    }
}

fn time(at: Option<&DateTime>) -> Value {
    at.and_then(|t| t.fmt(DateTimeFormat::DateTime).ok())
        .map(Value::String)
        .unwrap_or(Value::Null)
}

/// Drops absent (null) members: the API leaves out what has no value.
fn without_nulls(mut value: Value) -> Value {
    if let Some(fields) = value.as_object_mut() {
        fields.retain(|_, v| !v.is_null());
    }
    value
}

/// A parameter value in the AWS union shape, checked.
fn union_member(value: &Value) -> Result<(&str, &Value), ApiError> {
    match value.as_object() {
        Some(object) if object.len() == 1 => Ok(object
            .iter()
            .next()
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| bad_value(value))?),
        _ => Err(bad_value(value)),
    }
}

fn bad_value(value: &Value) -> ApiError {
    ApiError::Validation(format!(
        "a parameter value has exactly one of S, B, I, L, D, BIN, UL; got {}",
        truncate(&value.to_string())
    ))
}

fn truncate(text: &str) -> String {
    text.chars().take(100).collect()
}

macro_rules! parameter_value {
    ($name:ident, $ty:ty) => {
        /// Converts `{"S": ...}`-style JSON into the SDK's parameter value.
        pub fn $name(value: &Value) -> Result<$ty, ApiError> {
            let (kind, inner) = union_member(value)?;
            let builder = <$ty>::builder();
            let built = match (kind, inner) {
                ("S", Value::String(s)) => builder.s(s),
                ("B", Value::Bool(b)) => builder.b(*b),
                ("I", v) if v.as_i64().is_some_and(|i| i32::try_from(i).is_ok()) => {
                    builder.i(v.as_i64().unwrap_or_default() as i32)
                }
                ("L", v) if v.is_i64() => builder.l(v.as_i64().unwrap_or_default()),
                ("D", v) if v.is_number() => builder.d(v.as_f64().unwrap_or_default()),
                ("BIN", Value::String(b)) => {
                    builder.bin(Blob::new(BASE64.decode(b).map_err(|_| {
                        ApiError::Validation("BIN values are base64".into())
                    })?))
                }
                ("UL", Value::String(u)) if u.len() <= 20 && u.parse::<u64>().is_ok() => {
                    builder.ul(u)
                }
                _ => return Err(bad_value(value)),
            };
            Ok(built.build())
        }
    };
}

parameter_value!(iot_value, CommandParameterValue);
parameter_value!(
    jobs_value,
    aws_sdk_iotjobsdataplane::types::CommandParameterValue
);

fn value_json(v: &CommandParameterValue) -> Value {
    if let Some(s) = &v.s {
        json!({ "S": s })
    } else if let Some(b) = v.b {
        json!({ "B": b })
    } else if let Some(i) = v.i {
        json!({ "I": i })
    } else if let Some(l) = v.l {
        json!({ "L": l })
    } else if let Some(d) = v.d {
        json!({ "D": d })
    } else if let Some(bin) = &v.bin {
        json!({ "BIN": BASE64.encode(bin.as_ref()) })
    } else if let Some(ul) = &v.ul {
        json!({ "UL": ul })
    } else {
        Value::Null
    }
}

/// The command resource operations and StartCommandExecution. The API's command ids are
/// mapped into the deployment's [`CommandScope`] on the way in and out.
#[derive(Debug, Clone)]
pub struct CommandsGateway {
    pub iot: aws_sdk_iot::Client,
    pub jobs: aws_sdk_iotjobsdataplane::Client,
    pub scope: CommandScope,
}

impl CommandsGateway {
    pub fn new(iot: aws_sdk_iot::Client, jobs: aws_sdk_iotjobsdataplane::Client) -> Self {
        Self {
            iot,
            jobs,
            scope: CommandScope::default(),
        }
    }

    /// Commands live under `scope` in AWS IoT.
    pub fn with_scope(mut self, scope: CommandScope) -> Self {
        self.scope = scope;
        self
    }

    /// The AWS IoT id of an API command id (checked again: the handler has parsed it).
    fn aws_id(&self, id: &str) -> Result<String, ApiError> {
        self.scope.aws_id(&CommandId::parse(id)?)
    }

    /// The API id of an AWS IoT command id in the scope (`None` outside it).
    fn api_id(&self, aws_id: Option<&str>) -> Option<String> {
        aws_id
            .and_then(|id| self.scope.api_id(id))
            .map(CommandId::into_string)
    }

    /// CreateCommand with the payload the domain checked ([`CreateCommandRequest::validate`]):
    /// a static payload or a JSON payload template with mandatory parameters. Returns
    /// `{commandId, commandArn}`.
    pub async fn create(
        &self,
        id: &str,
        request: &CreateCommandRequest,
        document: CommandDocument,
    ) -> Result<Value, ApiError> {
        let aws_id = self.aws_id(id)?;
        let mut call = self
            .iot
            .create_command()
            .command_id(&aws_id)
            .set_display_name(request.display_name.clone())
            .set_description(request.description.clone());
        match document {
            CommandDocument::Static {
                bytes,
                content_type,
            } => {
                call = call.payload(
                    CommandPayload::builder()
                        .content(Blob::new(bytes))
                        .content_type(content_type)
                        .build(),
                );
            }
            CommandDocument::Template(text) => {
                let json_output = AwsJsonSubstitutionCommandPreprocessorConfig::builder()
                    .output_format(OutputFormat::Json)
                    .build()
                    .map_err(|e| internal(&e))?;
                call = call.payload_template(text).preprocessor(
                    CommandPreprocessor::builder()
                        .aws_json_substitution(json_output)
                        .build(),
                );
            }
        }
        for (i, parameter) in request.mandatory_parameters.iter().flatten().enumerate() {
            let field = |name: &str| parameter.get(name).and_then(Value::as_str);
            let name = field("name").ok_or_else(|| {
                ApiError::Validation(format!("mandatoryParameters[{i}].name is required"))
            })?;
            let mut built = CommandParameter::builder()
                .name(name)
                .set_description(field("description").map(str::to_owned));
            if let Some(kind) = field("type") {
                built = built.r#type(CommandParameterType::from(kind));
            }
            if let Some(default) = parameter.get("defaultValue") {
                built = built.default_value(iot_value(default)?);
            }
            call = call.mandatory_parameters(
                built
                    .build()
                    .map_err(|e| ApiError::Validation(e.to_string()))?,
            );
        }
        let out = call
            .send()
            .await
            .map_err(|e| api_error("CreateCommand", e, Resource::Command, id))?;
        Ok(json!({ "commandId": self.api_id(out.command_id()), "commandArn": out.command_arn() }))
    }

    /// GetCommand, in the API's shape.
    pub async fn get(&self, id: &str) -> Result<Value, ApiError> {
        let out = self
            .iot
            .get_command()
            .command_id(self.aws_id(id)?)
            .send()
            .await
            .map_err(|e| api_error("GetCommand", e, Resource::Command, id))?;
        let mut command = json!({
            "commandId": self.api_id(out.command_id()),
            "commandArn": out.command_arn(),
            "deprecated": out.deprecated().unwrap_or(false),
            "pendingDeletion": out.pending_deletion().unwrap_or(false),
            "createdAt": time(out.created_at()),
            "lastUpdatedAt": time(out.last_updated_at()),
        });
        let fields = command.as_object_mut().ok_or(ApiError::Internal)?;
        if let Some(v) = out.display_name() {
            fields.insert("displayName".into(), json!(v));
        }
        if let Some(v) = out.description() {
            fields.insert("description".into(), json!(v));
        }
        if let Some(payload) = out.payload() {
            let content_type = payload.content_type();
            let bytes = payload.content().map(|b| b.as_ref()).unwrap_or_default();
            let content = match serde_json::from_slice::<Value>(bytes) {
                Ok(value) if is_json_content_type(content_type) => value,
                _ => Value::String(BASE64.encode(bytes)),
            };
            fields.insert(
                "payload".into(),
                json!({ "content": content, "contentType": content_type }),
            );
        }
        if let Some(template) = out.payload_template() {
            let value = serde_json::from_str::<Value>(template)
                .unwrap_or_else(|_| Value::String(template.to_owned()));
            fields.insert("payloadTemplate".into(), value);
        }
        if !out.mandatory_parameters().is_empty() {
            let parameters: Vec<Value> = out
                .mandatory_parameters()
                .iter()
                .map(|p| {
                    let mut entry = json!({ "name": p.name() });
                    if let Some(t) = p.r#type() {
                        entry["type"] = json!(t.as_str());
                    }
                    if let Some(d) = p.default_value() {
                        entry["defaultValue"] = value_json(d);
                    }
                    if let Some(d) = p.description() {
                        entry["description"] = json!(d);
                    }
                    entry
                })
                .collect();
            fields.insert("mandatoryParameters".into(), Value::Array(parameters));
        }
        Ok(command)
    }

    /// ListCommands (AWS's own pagination token passes through).
    pub async fn list(
        &self,
        limit: u32,
        next_token: Option<String>,
    ) -> Result<Page<Value>, ApiError> {
        let out = self
            .iot
            .list_commands()
            .max_results(limit as i32)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(
                |e| match api_error("ListCommands", e, Resource::Command, "") {
                    ApiError::Validation(_) => ApiError::InvalidNextToken,
                    other => other,
                },
            )?;
        // ListCommands has no id filter: the account's other commands are left out here.
        let items = out
            .commands()
            .iter()
            .filter_map(|c| Some((self.api_id(c.command_id())?, c)))
            .map(|(id, c)| {
                without_nulls(json!({
                    "commandId": id,
                    "commandArn": c.command_arn(),
                    "displayName": c.display_name(),
                    "deprecated": c.deprecated().unwrap_or(false),
                    "pendingDeletion": c.pending_deletion().unwrap_or(false),
                    "createdAt": time(c.created_at()),
                    "lastUpdatedAt": time(c.last_updated_at()),
                }))
            })
            .collect();
        Ok(Page {
            items,
            next_token: out.next_token().map(str::to_owned),
        })
    }

    /// UpdateCommand: display name, description, deprecation.
    pub async fn update(
        &self,
        id: &str,
        request: &UpdateCommandRequest,
    ) -> Result<Value, ApiError> {
        let out = self
            .iot
            .update_command()
            .command_id(self.aws_id(id)?)
            .set_display_name(request.display_name.clone())
            .set_description(request.description.clone())
            .set_deprecated(request.deprecated)
            .send()
            .await
            .map_err(|e| api_error("UpdateCommand", e, Resource::Command, id))?;
        Ok(without_nulls(json!({
            "commandId": self.api_id(out.command_id()),
            "displayName": out.display_name(),
            "description": out.description(),
            "deprecated": out.deprecated().unwrap_or(false),
            "lastUpdatedAt": time(out.last_updated_at()),
        })))
    }

    /// DeleteCommand: 204 (deleted) or 202 (scheduled), as AWS answers.
    pub async fn delete(&self, id: &str) -> Result<u16, ApiError> {
        let out = self
            .iot
            .delete_command()
            .command_id(self.aws_id(id)?)
            .send()
            .await
            .map_err(|e| api_error("DeleteCommand", e, Resource::Command, id))?;
        Ok(if out.status_code() == 204 { 204 } else { 202 })
    }

    /// StartCommandExecution for one target; returns the execution id.
    pub async fn start(
        &self,
        command_arn: &str,
        target_arn: &str,
        parameters: Option<&Map<String, Value>>,
        timeout_s: Option<u64>,
        client_token: Option<String>,
    ) -> Result<String, ApiError> {
        let mut call = self
            .jobs
            .start_command_execution()
            .command_arn(command_arn)
            .target_arn(target_arn)
            .set_execution_timeout_seconds(timeout_s.map(|t| t as i64))
            .set_client_token(client_token);
        for (name, value) in parameters.into_iter().flatten() {
            call = call.parameters(
                name,
                jobs_value(value).map_err(|e| match e {
                    ApiError::Validation(m) => {
                        ApiError::Validation(format!("parameters.{name}: {m}"))
                    }
                    other => other,
                })?,
            );
        }
        let out = call
            .send()
            .await
            .map_err(|e| api_error("StartCommandExecution", e, Resource::Command, command_arn))?;
        out.execution_id()
            .map(str::to_owned)
            .ok_or(ApiError::Internal)
    }

    /// The result of an execution (GetCommandExecution with `includeResult`), in the HTTP API's
    /// upper-case shape; `None` when it has none or AWS IoT no longer has the execution.
    pub async fn result(
        &self,
        execution_id: &str,
        target_arn: &str,
    ) -> Result<Option<Value>, GatewayError> {
        let out = self
            .iot
            .get_command_execution()
            .execution_id(execution_id)
            .target_arn(target_arn)
            .include_result(true)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            // An execution AWS IoT no longer has (deleted, or past its retention) has no result
            // to fetch, now or on a retry.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                tracing::warn!(
                    execution = execution_id,
                    "GetCommandExecution: no such execution; recorded without a result"
                );
                return Ok(None);
            }
            Err(err) => return Err(GatewayError::from_sdk("GetCommandExecution", err)),
        };
        Ok(out.result().filter(|r| !r.is_empty()).map(|result| {
            Value::Object(
                result
                    .iter()
                    .map(|(key, value)| {
                        let v = if let Some(s) = value.s() {
                            json!({ "S": s })
                        } else if let Some(b) = value.b() {
                            json!({ "B": b })
                        } else if let Some(bin) = value.bin() {
                            json!({ "BIN": BASE64.encode(bin.as_ref()) })
                        } else {
                            Value::Null
                        };
                        (key.clone(), v)
                    })
                    .collect(),
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_values_convert_from_the_union_shape() {
        assert_eq!(
            iot_value(&json!({"S": "x"})).unwrap().s.as_deref(),
            Some("x")
        );
        assert_eq!(jobs_value(&json!({"I": 7})).unwrap().i, Some(7));
        assert_eq!(
            iot_value(&json!({"UL": "18446744073709551615"}))
                .unwrap()
                .ul
                .as_deref(),
            Some("18446744073709551615")
        );
        for bad in [
            json!({}),
            json!({"S": 1}),
            json!({"I": 5_000_000_000i64}),
            json!({"S": "a", "B": true}),
            json!("S"),
            json!({"BIN": "%%"}),
        ] {
            assert!(jobs_value(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            value_json(&iot_value(&json!({"B": true})).unwrap()),
            json!({"B": true})
        );
    }
}
