//! `status`: queries of invocations, executions and devices.

use lambda_http::{run, service_fn, Error};
use tether_adapters::{aws, config::Config};
use tether_status::handle;
use tether_store::Store;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = aws::sdk_config().await;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table);
    run(service_fn(|request| async {
        Ok::<_, Error>(handle(&store, request).await)
    }))
    .await
}
