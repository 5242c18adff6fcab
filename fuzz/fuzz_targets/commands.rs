//! The emulator's AWS IoT Commands service as the SDKs and devices drive it: CreateCommand,
//! UpdateCommand, StartCommandExecution and ListCommandExecutions bodies, a device's response
//! payload, and ListCommands' query with its `nextToken`. No panic; every refusal is a 4xx;
//! a command that was created can be read back, listed and not created twice; an execution that
//! was started can be read back, and started again with its client token gives the same id;
//! a page never holds more than `maxResults`, and its `nextToken` opens the next page.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tether_local_iot::aws::{arn_resource, Account, AwsError};
use tether_local_iot::commands::Commands;
use tether_local_iot::link::{Link, Message};

fn refused_as_client_error<T>(result: Result<T, AwsError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(err) => {
            assert!((400..500).contains(&err.status), "{err:?}");
            None
        }
    }
}

fn query(text: &str) -> HashMap<String, String> {
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

async fn run(lines: &[&str]) {
    let line = |i: usize| lines.get(i).copied().unwrap_or_default();
    // One detached link for the process: making one allocates the client's in-flight table.
    static LINK: OnceLock<Link> = OnceLock::new();
    let link = LINK.get_or_init(Link::detached).clone();
    let service = Commands::new(Account::default(), link, Duration::from_secs(1));
    let id = line(0);
    if refused_as_client_error(service.create_command(id, &json(line(1)))).is_some() {
        let got = service
            .get_command(id)
            .expect("a created command can be read");
        assert_eq!(got["commandId"], id);
        let again = service.create_command(id, &json(line(1)));
        assert_eq!(again.map_err(|e| e.status), Err(409));
        let listed = service
            .list_commands(&HashMap::new())
            .expect("default list");
        assert_eq!(listed["commands"][0]["commandId"], id);
    }
    if refused_as_client_error(service.update_command(id, &json(line(2)))).is_some() {
        let got = service
            .get_command(id)
            .expect("an updated command can be read");
        let update = json(line(2));
        if let Some(name) = update.get("displayName").filter(|v| v.is_string()) {
            assert_eq!(&got["displayName"], name);
        }
    }
    let start = json(line(3));
    if let Some(started) = refused_as_client_error(service.start_execution(&start).await) {
        let execution_id = started["executionId"].as_str().expect("an execution id");
        let target = start["targetArn"]
            .as_str()
            .expect("a started execution has a target");
        let by_target = HashMap::from([("targetArn".to_owned(), target.to_owned())]);
        let got = service
            .get_execution(execution_id, &by_target)
            .expect("a started execution can be read");
        // The emulator takes a command ARN of any region and account; the command is the same.
        let command = |arn: &Value| {
            arn.as_str()
                .and_then(arn_resource)
                .map(|(_, id)| id.to_owned())
        };
        assert_eq!(command(&got["commandArn"]), command(&start["commandArn"]));
        if start.get("clientToken").is_some_and(Value::is_string) {
            let again = service
                .start_execution(&start)
                .await
                .expect("the same request");
            assert_eq!(again["executionId"], execution_id);
        }
        let (kind, device) = arn_resource(target).expect("a thing or client ARN");
        let message = Message {
            topic: format!(
                "$aws/commands/{kind}s/{device}/executions/{execution_id}/response/json"
            ),
            payload: line(4).as_bytes().to_vec().into(),
            qos: rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            properties: Default::default(),
        };
        service.device_response(&message).await;
        let after = service
            .get_execution(execution_id, &by_target)
            .expect("an execution outlives any response");
        assert!(after["status"].is_string());
    }
    let list_query = query(line(5));
    if let Some(page) = refused_as_client_error(service.list_commands(&list_query)) {
        let max = list_query
            .get("maxResults")
            .and_then(|m| m.parse().ok())
            .unwrap_or(100);
        assert!(page["commands"].as_array().expect("a list").len() <= max);
        if let Some(next) = page["nextToken"].as_str() {
            let mut following = list_query.clone();
            following.insert("nextToken".into(), next.to_owned());
            service
                .list_commands(&following)
                .expect("a nextToken opens the next page");
        }
    }
    refused_as_client_error(service.list_executions(&list_query, &json(line(6))));
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.split('\n').collect();
    // A runtime per input: the execution timeouts it spawns end with it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(run(&lines));
});
