//! The embedded endpoint: it serves DynamoDB's API, injects the faults the reliability tests
//! ask for (an error answer, or a closed connection), and stops when dropped.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use tether_local_dynamodb::{set_fault, Fault, LocalDynamo};

async fn list(endpoint: &str) -> Result<usize, String> {
    let client = tether_local_dynamodb::client(endpoint).await;
    client
        .list_tables()
        .send()
        .await
        .map(|out| out.table_names().len())
        .map_err(|err| match err.as_service_error() {
            Some(service) => format!("service error {}", service.code().unwrap_or_default()),
            None => "no answer".to_owned(),
        })
}

#[tokio::test]
async fn faults_answer_errors_or_close_the_connection_and_clear() {
    let dynamo = LocalDynamo::start(0).unwrap();
    let endpoint = dynamo.endpoint().to_owned();
    assert_eq!(list(&endpoint).await, Ok(0));

    set_fault(&endpoint, Some(&Fault::unavailable(&["ListTables"])))
        .await
        .unwrap();
    let unavailable = list(&endpoint).await;
    set_fault(&endpoint, Some(&Fault::refused(&[])))
        .await
        .unwrap();
    let refused = list(&endpoint).await;
    let failed = set_fault(&endpoint, None).await.unwrap();

    assert_eq!(unavailable, Err("service error ServiceUnavailable".into()));
    assert_eq!(refused, Err("no answer".into()));
    assert!(
        failed >= 1,
        "the refusing fault counted its requests: {failed}"
    );
    assert_eq!(list(&endpoint).await, Ok(0), "cleared, it answers again");
}

#[tokio::test]
async fn a_dropped_endpoint_frees_its_port() {
    let dynamo = LocalDynamo::start(0).unwrap();
    let endpoint = dynamo.endpoint().to_owned();
    assert!(dynamo.is_running());

    drop(dynamo);

    let port = endpoint.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on {endpoint} any more"
    );
    let again = LocalDynamo::start(port).unwrap();
    assert_eq!(list(again.endpoint()).await, Ok(0));
}
