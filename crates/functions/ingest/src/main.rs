//! `ingest`: IoT rule events into DynamoDB.
#![recursion_limit = "256"] // the Lambda runtime and the AWS SDK nest futures deeply

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tether_adapters::{aws, commands::CommandsGateway, config::Config};
use tether_ingest::{handle, Deps};
use tether_store::Store;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = aws::sdk_config().await;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table)
        .with_retention(config.retention);
    let commands = CommandsGateway::new(
        aws_sdk_iot::Client::new(&sdk),
        aws_sdk_iotjobsdataplane::Client::new(&sdk),
    );
    let deps = Deps {
        store,
        commands,
        topics: config.topics,
    };
    run(service_fn(|event: LambdaEvent<serde_json::Value>| async {
        handle(&deps, event.payload).await
    }))
    .await
}
