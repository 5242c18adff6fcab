//! The AWS IoT side of the tests: the real SDK clients pointed at a local-iot endpoint, and
//! the few Commands calls many tests make.

use aws_sdk_iot::operation::get_command_execution::GetCommandExecutionOutput;
use aws_sdk_iot::primitives::Blob;
use aws_sdk_iot::types::CommandPayload;
use serde_json::Value;

/// The account local-iot answers as.
pub const ACCOUNT: &str = "000000000000";

/// The control plane, the Commands data plane and iot-data, on one endpoint.
pub struct Clients {
    pub iot: aws_sdk_iot::Client,
    pub jobs: aws_sdk_iotjobsdataplane::Client,
    pub data: aws_sdk_iotdataplane::Client,
}

/// The SDK configuration of the tests: `endpoint`, us-east-1, static test credentials.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iot::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

impl Clients {
    /// Clients of the emulator at `endpoint` (`LocalIot::endpoint_url`).
    pub async fn new(endpoint: &str) -> Self {
        let config = sdk_config(endpoint).await;
        Self {
            iot: aws_sdk_iot::Client::new(&config),
            jobs: aws_sdk_iotjobsdataplane::Client::new(&config),
            data: aws_sdk_iotdataplane::Client::new(&config),
        }
    }

    /// CreateCommand with a static JSON payload; returns the command ARN.
    pub async fn create_json_command(&self, id: &str, payload: Value) -> String {
        let out = self
            .iot
            .create_command()
            .command_id(id)
            .payload(
                CommandPayload::builder()
                    .content(Blob::new(payload.to_string()))
                    .content_type("application/json")
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateCommand {id}: {e:?}"));
        out.command_arn().unwrap_or_default().to_owned()
    }

    /// StartCommandExecution on one thing; returns the execution id.
    pub async fn start_execution(&self, command_arn: &str, thing: &str, timeout_s: i64) -> String {
        let out = self
            .jobs
            .start_command_execution()
            .command_arn(command_arn)
            .target_arn(thing_arn(thing))
            .execution_timeout_seconds(timeout_s)
            .send()
            .await
            .unwrap_or_else(|e| panic!("StartCommandExecution on {thing}: {e:?}"));
        out.execution_id().unwrap_or_default().to_owned()
    }

    /// GetCommandExecution with its result.
    pub async fn execution(&self, thing: &str, execution: &str) -> GetCommandExecutionOutput {
        self.iot
            .get_command_execution()
            .execution_id(execution)
            .target_arn(thing_arn(thing))
            .include_result(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetCommandExecution {execution}: {e:?}"))
    }
}

/// A thing's ARN in local-iot's account.
pub fn thing_arn(name: &str) -> String {
    format!("arn:aws:iot:us-east-1:{ACCOUNT}:thing/{name}")
}
