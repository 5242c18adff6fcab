//! `ingest`: IoT rule events into DynamoDB.
#![recursion_limit = "256"] // the Lambda runtime and the AWS SDK nest futures deeply

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tether_ingest::{handle, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = Deps::from_env().await?;
    run(service_fn(|event: LambdaEvent<serde_json::Value>| async {
        handle(&deps, event.payload).await
    }))
    .await
}
