//! `jobs`: AWS IoT Jobs through Tether's API.

use lambda_http::{run, service_fn, Error};
use tether_adapters::{aws, config::Config, jobs::JobsGateway};
use tether_jobs::{handle, Deps};
use tether_store::Store;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let arn_prefix = config.iot_arn_prefix.clone().ok_or(
        "environment variable ACCOUNT_ID is required: jobs name their targets by thing ARN",
    )?;
    let sdk = aws::sdk_config().await;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table)
        .with_retention(config.retention);
    let gateway =
        JobsGateway::new(aws_sdk_iot::Client::new(&sdk), arn_prefix).with_scope(config.jobs);
    let deps = Deps { store, gateway };
    run(service_fn(|request| async {
        Ok::<_, Error>(handle(&deps, request).await)
    }))
    .await
}
