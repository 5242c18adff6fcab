//! `invoke`: synchronous direct invocation of a device method.

use lambda_http::{run, service_fn, Error};
use tether_adapters::{aws, config::Config, iot::IotGateway};
use tether_invoke::{handle, Deps};
use tether_store::Store;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = aws::sdk_config().await;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table)
        .with_retention(config.retention);
    let deps = Deps {
        store,
        iot: IotGateway::new(aws_sdk_iotdataplane::Client::new(&sdk)),
        config,
    };
    run(service_fn(|request| async {
        Ok::<_, Error>(handle(&deps, request).await)
    }))
    .await
}
