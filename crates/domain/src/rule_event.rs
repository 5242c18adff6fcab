//! What a topic rule hands to `ingest`, and the failed events a dead-letter message holds.
//!
//! Both arrive from outside the function's control (a rule's SQL shapes the first; an SQS
//! message, written by Lambda or by a rule's error action, holds the second), so both are
//! parsed here, with the domain's other parsers, and fuzzed with them.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One event as a topic rule delivers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleEvent {
    /// `topic() AS topic`.
    pub topic: String,
    /// The reply rule's `encode(*, 'base64') AS payload`: the device's message, whatever it is.
    #[serde(default)]
    pub payload: Option<String>,
    /// The reply rule's `timestamp() AS receivedAt`.
    #[serde(default, rename = "receivedAt")]
    pub received_at: Option<i64>,
    /// The fields of an event AWS IoT writes (presence, command execution).
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl RuleEvent {
    /// A text field of an event AWS IoT wrote.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// A whole-number field (a time in milliseconds) of an event AWS IoT wrote.
    pub fn time(&self, name: &str) -> Option<i64> {
        self.fields.get(name).and_then(Value::as_i64)
    }
}

/// Why a dead-letter message holds no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadLetterError {
    #[error("the message is not JSON")]
    NotJson,
    #[error("neither a Lambda failure record nor an IoT rule error message")]
    NoEvent,
    #[error("base64OriginalPayload is not base64")]
    BadBase64,
}

/// The failed event a dead-letter message holds: Lambda's record of an asynchronous invocation
/// that failed after its retries (the event is its `requestPayload`), or an IoT rule's error
/// action message (the device's original payload, base64, and the topic). The error action
/// does not keep the rule's other selected fields, so a reply redriven from it is timed by the
/// redrive rather than by its arrival.
pub fn dead_letter_event(body: &str) -> Result<RuleEvent, DeadLetterError> {
    let message: Value = serde_json::from_str(body).map_err(|_| DeadLetterError::NotJson)?;
    if let Some(event) = message.get("requestPayload").filter(|e| e.is_object()) {
        return serde_json::from_value(event.clone()).map_err(|_| DeadLetterError::NoEvent);
    }
    let (Some(topic), Some(payload)) = (
        message.get("topic").and_then(Value::as_str),
        message.get("base64OriginalPayload").and_then(Value::as_str),
    ) else {
        return Err(DeadLetterError::NoEvent);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .map_err(|_| DeadLetterError::BadBase64)?;
    // A reply reads `payload`; an event AWS IoT wrote reads its fields.
    let fields = serde_json::from_slice::<Map<String, Value>>(&bytes).unwrap_or_default();
    Ok(RuleEvent {
        topic: topic.to_owned(),
        payload: Some(payload.to_owned()),
        received_at: None,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_event_in_a_lambda_failure_record_comes_back_as_it_was() {
        let event: RuleEvent = serde_json::from_value(json!({
            "topic": "$aws/events/presence/connected/dev-1",
            "clientId": "dev-1",
            "timestamp": 1_700_000_000_000_i64,
        }))
        .unwrap();
        let record = json!({ "requestPayload": event, "responsePayload": {"errorType": "x"} });

        let back = dead_letter_event(&record.to_string()).unwrap();

        assert_eq!(back, event);
        assert_eq!(back.text("clientId"), Some("dev-1"));
        assert_eq!(back.time("timestamp"), Some(1_700_000_000_000));
    }

    #[test]
    fn numbers_survive_a_failure_record_exactly() {
        // Found by the dead_letters fuzz target: without serde_json's float_roundtrip, this
        // came back as 1795456706666.067.
        let body = r#"{"requestPayload": {"topic": "t", "timestamp": 1795456706666.0667}}"#;
        let event = dead_letter_event(body).unwrap();
        let again = dead_letter_event(&json!({ "requestPayload": event }).to_string()).unwrap();
        assert_eq!(again, event);
        assert_eq!(again.fields["timestamp"].as_f64(), Some(1795456706666.0667));
    }

    #[test]
    fn a_rule_error_message_gives_the_topic_and_the_original_payload() {
        let payload =
            base64::engine::general_purpose::STANDARD.encode(br#"{"status":"SUCCEEDED"}"#);
        let message =
            json!({ "topic": "tether/replies/dev-1/r1", "base64OriginalPayload": payload });

        let event = dead_letter_event(&message.to_string()).unwrap();

        assert_eq!(event.topic, "tether/replies/dev-1/r1");
        assert_eq!(event.payload.as_deref(), Some(payload.as_str()));
        assert_eq!(event.text("status"), Some("SUCCEEDED"));
    }
}
