//! Property-based fuzzing of everything that parses outside input: API request bodies, device
//! replies, Commands responses, topics and ids. Arbitrary bytes and near-valid documents must
//! give `Ok` or a typed error, never a panic; what parses must be what it claims to be. (A
//! proptest fuzz: `cargo fuzz` needs a nightly toolchain, which these machines do not have.)
//! Cases that once failed are kept as named tests below.

use proptest::prelude::*;
use serde_json::{json, Value};
use tether_domain::api::{
    CreateCommandRequest, InvokeRequest, StartExecutionsRequest, UpdateCommandRequest,
};
use tether_domain::reply::{CommandResponse, DeviceReply};
use tether_domain::topics::{
    filter_matches, CommandTopic, ExecutionEventTopic, InvokeTopics, PresenceTopic,
};
use tether_domain::{CommandId, DeviceId, MethodName, RequestId};

/// JSON values of any shape, with the strings that matter here mixed in.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("SUCCEEDED".to_owned()),
            Just("FAILED".to_owned()),
            Just("$NO_RESPONSE_FROM_DEVICE".to_owned()),
            Just("a/+/#".to_owned()),
            ".{0,40}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("method".to_owned()),
                    Just("timeoutMs".to_owned()),
                    Just("payload".to_owned()),
                    Just("status".to_owned()),
                    Just("statusReason".to_owned()),
                    Just("reasonCode".to_owned()),
                    Just("result".to_owned()),
                    Just("targets".to_owned()),
                    Just("waitMs".to_owned()),
                    Just("content".to_owned()),
                    "[a-zA-Z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text that is mostly topic-like.
fn topic_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("tether".to_owned()),
            Just("$aws".to_owned()),
            Just("devices".to_owned()),
            Just("invoke".to_owned()),
            Just("replies".to_owned()),
            Just("commands".to_owned()),
            Just("things".to_owned()),
            Just("executions".to_owned()),
            Just("request".to_owned()),
            Just("response".to_owned()),
            Just("json".to_owned()),
            Just("events".to_owned()),
            Just("presence".to_owned()),
            Just("connected".to_owned()),
            Just("commandExecution".to_owned()),
            Just("+".to_owned()),
            Just("#".to_owned()),
            Just(String::new()),
            "[a-zA-Z0-9_:-]{1,12}",
            ".{0,6}",
        ],
        0..9,
    )
    .prop_map(|levels| levels.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn request_bodies_from_any_bytes_parse_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(body) = serde_json::from_slice::<InvokeRequest>(&bytes) {
            let _ = body.validate();
        }
        if let Ok(body) = serde_json::from_slice::<StartExecutionsRequest>(&bytes) {
            let _ = body.validate();
        }
        if let Ok(body) = serde_json::from_slice::<UpdateCommandRequest>(&bytes) {
            let _ = body.validate();
        }
        let _ = serde_json::from_slice::<CreateCommandRequest>(&bytes);
    }

    #[test]
    fn request_bodies_of_any_json_shape_validate_or_fail_cleanly(value in json_value()) {
        if let Ok(body) = serde_json::from_value::<InvokeRequest>(value.clone()) {
            if let Ok(call) = body.validate() {
                // Whatever passes names a method that is a valid topic level.
                prop_assert!(MethodName::parse(call.method.as_str()).is_ok());
            }
        }
        if let Ok(body) = serde_json::from_value::<StartExecutionsRequest>(value.clone()) {
            if let Ok(start) = body.validate() {
                prop_assert!(!start.targets.is_empty() && start.targets.len() <= 100);
            }
        }
        let _ = serde_json::from_value::<CreateCommandRequest>(value);
    }

    #[test]
    fn device_replies_and_command_responses_parse_or_fail_cleanly(value in json_value(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let text = value.to_string();
        let _ = DeviceReply::parse(text.as_bytes());
        let _ = DeviceReply::parse(&bytes);
        if let Ok(response) = CommandResponse::parse(text.as_bytes()) {
            let _ = response.api_result();
        }
        let _ = CommandResponse::parse(&bytes);
    }

    #[test]
    fn topics_parse_only_into_what_prints_back_the_same(topic in topic_text()) {
        let invoke = InvokeTopics::new("tether").unwrap();
        if let Ok(request) = invoke.parse_request(&topic) {
            prop_assert_eq!(invoke.request(&request.device, &request.method, &request.request_id), topic.clone());
        }
        if let Ok(reply) = invoke.parse_reply(&topic) {
            prop_assert_eq!(invoke.reply(&reply.device, &reply.request_id), topic.clone());
        }
        if let Ok(command) = CommandTopic::parse(&topic) {
            prop_assert_eq!(command.to_string(), topic.clone());
        }
        if let Ok(event) = ExecutionEventTopic::parse(&topic) {
            prop_assert_eq!(event.to_string(), topic.clone());
        }
        if let Ok(presence) = PresenceTopic::parse(&topic) {
            prop_assert_eq!(presence.to_string(), topic.clone());
        }
        let _ = filter_matches(&topic, "tether/devices/dev-1/invoke/m/r");
        let _ = filter_matches("tether/#", &topic);
    }

    #[test]
    fn ids_that_parse_cannot_change_a_topic(text in ".{0,140}") {
        for ok in [
            DeviceId::parse(text.clone()).is_ok(),
            MethodName::parse(text.clone()).is_ok(),
            CommandId::parse(text.clone()).is_ok(),
            RequestId::parse(text.clone()).is_ok(),
        ] {
            if ok {
                prop_assert!(!text.is_empty());
                prop_assert!(!text.chars().any(|c| matches!(c, '/' | '+' | '#' | '$' | '\0') || c.is_whitespace()));
            }
        }
    }
}
