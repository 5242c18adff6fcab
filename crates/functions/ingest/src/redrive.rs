//! `redrive`: the dead-letter queue (an SQS event source mapping, `RedriveDeadLetters`) back
//! into ingest's code, one failed event per message; what fails again stays in the queue.
#![recursion_limit = "256"] // the Lambda runtime and the AWS SDK nest futures deeply

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use tether_ingest::{redrive, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = Deps::from_env().await?;
    run(service_fn(|event: LambdaEvent<SqsEvent>| async {
        Ok::<SqsBatchResponse, Error>(redrive(&deps, event.payload).await)
    }))
    .await
}
