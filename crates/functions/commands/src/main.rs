//! `commands`: AWS IoT Commands through Tether's API.

use lambda_http::{run, service_fn, Error};
use tether_adapters::{aws, commands::CommandsGateway, config::Config};
use tether_commands::{handle, Deps};
use tether_store::Store;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = aws::sdk_config().await;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table)
        .with_retention(config.retention);
    let gateway = CommandsGateway::new(
        aws_sdk_iot::Client::new(&sdk),
        aws_sdk_iotjobsdataplane::Client::new(&sdk),
    )
    .with_scope(config.commands);
    let deps = Deps { store, gateway };
    run(service_fn(|request| async {
        Ok::<_, Error>(handle(&deps, request).await)
    }))
    .await
}
