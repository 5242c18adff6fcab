//! AWS IoT Commands as the functions use it: the control plane (aws-sdk-iot) and
//! StartCommandExecution (aws-sdk-iotjobsdataplane), translated to and from the API's JSON.
//!
//! Parameter values and results are the AWS union `{"S"|"B"|"I"|"L"|"D"|"BIN"|"UL": ...}` on
//! both sides (docs/aws-iot-reference.md §4), read and written as the domain's
//! [`ParameterValue`]; results come back from GetCommandExecution as `S`/`B`/`BIN`.

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
    is_json_content_type, CommandDocument, CommandParameter as ApiParameter,
    CommandPayload as ApiPayload, CommandResource, CreateCommandRequest, Page,
    UpdateCommandRequest,
};
use tether_domain::clock::excerpt;
use tether_domain::error::Resource;
use tether_domain::parameter::{ParameterError, ParameterValue};
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

fn time(at: Option<&DateTime>) -> Option<String> {
    at.and_then(|t| t.fmt(DateTimeFormat::DateTime).ok())
}

/// Drops absent (null) members: the API leaves out what has no value.
fn without_nulls(mut value: Value) -> Value {
    if let Some(fields) = value.as_object_mut() {
        fields.retain(|_, v| !v.is_null());
    }
    value
}

/// The parameter value in a request's `field`, checked by the domain's rules.
fn parameter_value(field: &str, value: &Value) -> Result<ParameterValue, ApiError> {
    ParameterValue::parse(value).map_err(|err| match err {
        ParameterError::Shape => ApiError::Validation(format!(
            "{field}: {err}; got {}",
            truncate(&value.to_string())
        )),
        ParameterError::Bin => ApiError::Validation(format!("{field}: {err}")),
    })
}

fn truncate(text: &str) -> String {
    text.chars().take(100).collect()
}

macro_rules! to_sdk_value {
    ($name:ident, $ty:ty) => {
        /// The SDK's parameter value for a domain one.
        pub fn $name(value: &ParameterValue) -> $ty {
            let builder = <$ty>::builder();
            match value {
                ParameterValue::S(s) => builder.s(s),
                ParameterValue::B(b) => builder.b(*b),
                ParameterValue::I(i) => builder.i(*i),
                ParameterValue::L(l) => builder.l(*l),
                ParameterValue::D(d) => builder.d(d.as_f64().unwrap_or_default()),
                ParameterValue::Bin(bytes) => builder.bin(Blob::new(bytes.clone())),
                ParameterValue::Ul(u) => builder.ul(u.to_string()),
            }
            .build()
        }
    };
}

to_sdk_value!(iot_value, CommandParameterValue);
to_sdk_value!(
    jobs_value,
    aws_sdk_iotjobsdataplane::types::CommandParameterValue
);

/// The domain's value for one the SDK returned (a default value or a result), if it has a member.
fn from_sdk_value(v: &CommandParameterValue) -> Option<ParameterValue> {
    Some(if let Some(s) = &v.s {
        ParameterValue::S(s.clone())
    } else if let Some(b) = v.b {
        ParameterValue::B(b)
    } else if let Some(i) = v.i {
        ParameterValue::I(i)
    } else if let Some(l) = v.l {
        ParameterValue::L(l)
    } else if let Some(d) = v.d.and_then(serde_json::Number::from_f64) {
        ParameterValue::D(d)
    } else if let Some(bin) = &v.bin {
        ParameterValue::Bin(bin.as_ref().to_vec())
    } else {
        ParameterValue::Ul(v.ul.as_deref()?.parse().ok()?)
    })
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
                let field = format!("mandatoryParameters[{i}].defaultValue");
                built = built.default_value(iot_value(&parameter_value(&field, default)?));
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
    pub async fn get(&self, id: &str) -> Result<CommandResource, ApiError> {
        let out = self
            .iot
            .get_command()
            .command_id(self.aws_id(id)?)
            .send()
            .await
            .map_err(|e| api_error("GetCommand", e, Resource::Command, id))?;
        let payload = out.payload().map(|payload| {
            let content_type = payload.content_type();
            let bytes = payload.content().map(|b| b.as_ref()).unwrap_or_default();
            let content = match serde_json::from_slice::<Value>(bytes) {
                Ok(value) if is_json_content_type(content_type) => value,
                _ => Value::String(BASE64.encode(bytes)),
            };
            ApiPayload {
                content,
                content_type: content_type.map(str::to_owned),
            }
        });
        let payload_template = out.payload_template().map(|template| {
            serde_json::from_str::<Value>(template)
                .unwrap_or_else(|_| Value::String(template.to_owned()))
        });
        let parameters: Vec<_> = out
            .mandatory_parameters()
            .iter()
            .map(|p| ApiParameter {
                name: p.name().to_owned(),
                kind: p.r#type().map(|t| t.as_str().to_owned()),
                default_value: p.default_value().and_then(from_sdk_value),
                description: p.description().map(str::to_owned),
            })
            .collect();
        Ok(CommandResource {
            command_id: self
                .api_id(out.command_id())
                .unwrap_or_else(|| id.to_owned()),
            command_arn: out.command_arn().map(str::to_owned),
            display_name: out.display_name().map(str::to_owned),
            description: out.description().map(str::to_owned),
            deprecated: out.deprecated().unwrap_or(false),
            pending_deletion: out.pending_deletion().unwrap_or(false),
            created_at: time(out.created_at()),
            last_updated_at: time(out.last_updated_at()),
            payload,
            payload_template,
            mandatory_parameters: (!parameters.is_empty()).then_some(parameters),
        })
    }

    /// ListCommands (AWS's own pagination token passes through).
    pub async fn list(
        &self,
        limit: u32,
        next_token: Option<String>,
    ) -> Result<Page<CommandResource>, ApiError> {
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
            .map(|(command_id, c)| CommandResource {
                command_id,
                command_arn: c.command_arn().map(str::to_owned),
                display_name: c.display_name().map(str::to_owned),
                deprecated: c.deprecated().unwrap_or(false),
                pending_deletion: c.pending_deletion().unwrap_or(false),
                created_at: time(c.created_at()),
                last_updated_at: time(c.last_updated_at()),
                ..CommandResource::default()
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
            let value = parameter_value(&format!("parameters.{name}"), value)?;
            call = call.parameters(name, jobs_value(&value));
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
                        let value = if let Some(s) = value.s() {
                            ParameterValue::S(s.to_owned()).to_json()
                        } else if let Some(b) = value.b() {
                            ParameterValue::B(b).to_json()
                        } else if let Some(bin) = value.bin() {
                            ParameterValue::Bin(bin.as_ref().to_vec()).to_json()
                        } else {
                            Value::Null
                        };
                        (key.clone(), value)
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
        let iot = |v: Value| iot_value(&parameter_value("p", &v).unwrap());
        assert_eq!(iot(json!({"S": "x"})).s.as_deref(), Some("x"));
        assert_eq!(
            jobs_value(&parameter_value("p", &json!({"I": 7})).unwrap()).i,
            Some(7)
        );
        assert_eq!(
            iot(json!({"UL": "18446744073709551615"})).ul.as_deref(),
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
            assert!(parameter_value("p", &bad).is_err(), "{bad}");
        }
        for value in [
            json!({"B": true}),
            json!({"BIN": "AAE="}),
            json!({"UL": "12"}),
        ] {
            assert_eq!(
                from_sdk_value(&iot(value.clone())).unwrap().to_json(),
                value
            );
        }
    }
}
