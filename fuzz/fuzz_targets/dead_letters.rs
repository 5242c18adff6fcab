//! Dead-letter messages as the `redrive` function reads them from SQS: a Lambda failure record
//! (the event in `requestPayload`) or an IoT rule's error-action message (topic and
//! base64 payload). No panic; an accepted event, put back in a failure record, comes back the
//! same; an error-action message keeps its topic and its payload, which is valid base64.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tether_domain::rule_event::dead_letter_event;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(event) = dead_letter_event(body) else {
        return;
    };
    let record = json!({ "requestPayload": event });
    assert_eq!(
        dead_letter_event(&record.to_string()).as_ref(),
        Ok(&event),
        "an event survives a failure record"
    );
    let message: Value = serde_json::from_str(body).expect("accepted bodies are JSON");
    if message.get("requestPayload").is_some_and(Value::is_object) {
        return;
    }
    assert_eq!(message["topic"].as_str(), Some(event.topic.as_str()));
    let payload = event
        .payload
        .as_deref()
        .expect("an error message has a payload");
    assert_eq!(message["base64OriginalPayload"].as_str(), Some(payload));
    assert!(base64::engine::general_purpose::STANDARD
        .decode(payload)
        .is_ok());
});
