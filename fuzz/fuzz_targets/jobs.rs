//! AWS IoT Jobs input: the device topics, the job event topics and events (what `ingest` reads
//! from AWS IoT), the API's `POST /jobs` body, and the emulator's UpdateJobExecution body. No
//! panic; a parsed topic, rebuilt, is the topic it was parsed from; a parsed event names the
//! job of its topic and a device exactly when it is an execution event; a validated job stays
//! within the API's limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_domain::api::{CreateJobRequest, MAX_JOB_DOCUMENT_BYTES, MAX_JOB_TARGETS};
use tether_domain::jobs::{JobEvent, JobEventKind, JobEventTopic, JobTopic};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (topic, body) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(parsed) = JobTopic::parse(topic) {
        assert_eq!(parsed.to_string(), topic);
    }
    if let Ok(parsed) = JobEventTopic::parse(topic) {
        assert_eq!(parsed.to_string(), topic);
    }
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(body) {
        if let Ok(event) = JobEvent::parse(topic, &fields) {
            assert_eq!(event.topic.to_string(), topic);
            assert_eq!(
                event.thing.is_some(),
                event.topic.kind == JobEventKind::Execution
            );
            assert!(event.at_ms >= 0);
        }
    }
    if let Ok(request) = serde_json::from_str::<CreateJobRequest>(body) {
        if let Ok(job) = request.validate() {
            assert!((1..=MAX_JOB_TARGETS).contains(&job.targets.len()));
            let document = serde_json::Value::Object(job.document).to_string();
            assert!(document.len() <= MAX_JOB_DOCUMENT_BYTES);
        }
    }
    let _ = tether_local_iot::jobs::check_update_request(body.as_bytes());
});
