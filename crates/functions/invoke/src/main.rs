//! `invoke`: synchronous direct invocation of a device method.

use lambda_http::{run, service_fn, Error};
use std::time::Duration;
use tether_adapters::{aws, config::Config, iot::IotGateway};

use tether_invoke::inbox::{Endpoint, Inbox, Presigner};
use tether_invoke::{handle, Deps};
use tether_store::Store;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = aws::sdk_config().await;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table)
        .with_retention(config.retention);
    // The inbox connects during init, so the first call can use it; it keeps reconnecting in
    // the background if the broker is not there yet.
    let inbox = match &config.reply_inbox {
        Some(url) => {
            let endpoint =
                Endpoint::parse(url).map_err(|problem| format!("REPLY_INBOX: {problem}"))?;
            let signer = match (sdk.region(), sdk.credentials_provider()) {
                (Some(region), Some(credentials)) => {
                    Some(Presigner::new(region.as_ref(), credentials))
                }
                _ => None,
            };
            let inbox = Inbox::open(
                &endpoint,
                signer,
                config.topics.clone(),
                Duration::from_secs(2),
            )
            .await
            .map_err(|problem| format!("REPLY_INBOX: {problem}"))?;
            Some(inbox)
        }
        None => None,
    };
    let deps = Deps {
        store,
        iot: IotGateway::new(aws_sdk_iotdataplane::Client::new(&sdk)),
        config,
        inbox,
    };
    run(service_fn(|request| async {
        Ok::<_, Error>(handle(&deps, request).await)
    }))
    .await
}
