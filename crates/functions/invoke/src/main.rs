//! `invoke`: synchronous direct invocation of a device method.

use lambda_http::{run, service_fn, tracing, Error};
use std::time::Duration;
use tether_adapters::config::{Config, Delivery};
use tether_adapters::{aws, iot::IotGateway};

use tether_invoke::inbox::{Endpoint, Inbox, Presigner};
use tether_invoke::{handle, Deps};
use tether_store::Store;

/// How long init may spend warming the connections up.
const WARM_UP_AT_MOST: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = aws::sdk_config().await;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table)
        .with_retention(config.retention);
    let iot = IotGateway::new(aws_sdk_iotdataplane::Client::new(&sdk));
    // The inbox connects during init, so the first call can use it; it keeps reconnecting in
    // the background if the broker is not there yet. Meanwhile the connections to DynamoDB and
    // iot-data open (TCP and TLS), so the first call does not pay for them either.
    let warm_up = async {
        if config.warm_up {
            let direct = config.delivery == Delivery::Direct;
            let both = async {
                let (store, iot) =
                    tokio::join!(store.warm_up(), iot.warm_up(direct, config.topics.prefix()));
                let store = store.err().map(|e| e.to_string());
                store
                    .into_iter()
                    .chain(iot.err().map(|e| e.to_string()))
                    .collect()
            };
            // Bounded: an endpoint that does not answer is the first call's to report.
            let problems: Vec<String> = tokio::time::timeout(WARM_UP_AT_MOST, both)
                .await
                .unwrap_or_else(|_| vec!["no answer within the warm-up's time".into()]);
            for problem in problems {
                tracing::warn!(%problem, "warming a connection up during init failed");
            }
        }
    };
    let open_inbox = async {
        match &config.reply_inbox {
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
                Ok::<_, Error>(Some(inbox))
            }
            None => Ok(None),
        }
    };
    let ((), inbox) = tokio::join!(warm_up, open_inbox);
    let inbox = inbox?;
    let deps = Deps {
        store,
        iot,
        config,
        inbox,
    };
    run(service_fn(|request| async {
        Ok::<_, Error>(handle(&deps, request).await)
    }))
    .await
}
