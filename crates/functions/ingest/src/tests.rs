//! The handler with fake ports and the sample events of `events/`.

use std::sync::Mutex;

use super::*;

const REPLY: &str = include_str!("../../../../events/ingest-reply.json");
const CONNECTED: &str = include_str!("../../../../events/ingest-presence-connected.json");
const DISCONNECTED: &str = include_str!("../../../../events/ingest-presence-disconnected.json");
const SUCCEEDED: &str = include_str!("../../../../events/ingest-execution-succeeded.json");
const TIMED_OUT: &str = include_str!("../../../../events/ingest-execution-timed-out.json");
const REDRIVE: &str = include_str!("../../../../events/ingest-redrive-sqs.json");

#[derive(Default)]
struct Fake {
    topics: InvokeTopics,
    scope: CommandScope,
    replies: Mutex<Vec<(RequestId, DeviceId, StatusChange)>>,
    events: Mutex<Vec<(RecordKey, StatusChange)>>,
    presence: Mutex<Vec<PresenceEvent>>,
    executions: Mutex<Vec<(ExecutionId, StatusChange, RecordMeta)>>,
    results: Mutex<Vec<(ExecutionId, Value)>>,
    jobs: Mutex<Vec<(JobId, JobEvent)>>,
    job_scope: JobScope,
    details_asked: Mutex<Vec<(String, DeviceId)>>,
    fail: bool,
}

impl Fake {
    /// Ports whose commands live under the template's default prefix, `tether-`.
    fn scoped() -> Self {
        Fake {
            scope: CommandScope::new("tether-").unwrap(),
            job_scope: JobScope::new("tether-").unwrap(),
            ..Fake::default()
        }
    }
}

fn unavailable() -> StoreError {
    StoreError::Schema("simulated outage".into())
}

impl Ports for Fake {
    async fn apply_reply(
        &self,
        id: &RequestId,
        device: &DeviceId,
        change: &StatusChange,
    ) -> Result<Outcome, StoreError> {
        if self.fail {
            return Err(unavailable());
        }
        self.replies
            .lock()
            .unwrap()
            .push((id.clone(), device.clone(), change.clone()));
        Ok(Outcome {
            new_event: true,
            applied: true,
        })
    }

    async fn reject_reply(
        &self,
        id: &RequestId,
        _: &DeviceId,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        self.events
            .lock()
            .unwrap()
            .push((RecordKey::Invocation(id.clone()), change.clone()));
        Ok(true)
    }

    async fn record_presence(&self, event: &PresenceEvent) -> Result<bool, StoreError> {
        if self.fail {
            return Err(unavailable());
        }
        self.presence.lock().unwrap().push(event.clone());
        Ok(true)
    }

    async fn apply_execution(
        &self,
        id: &ExecutionId,
        change: &StatusChange,
        meta: &RecordMeta,
    ) -> Result<Outcome, StoreError> {
        self.executions
            .lock()
            .unwrap()
            .push((id.clone(), change.clone(), meta.clone()));
        Ok(Outcome {
            new_event: true,
            applied: true,
        })
    }

    async fn fetch_result(
        &self,
        _: &ExecutionId,
        target_arn: &str,
    ) -> Result<Option<Value>, GatewayError> {
        assert_eq!(target_arn, "arn:aws:iot:us-east-1:123456789012:thing/car-1");
        Ok(Some(json!({"unlocked": {"B": true}})))
    }

    async fn store_result(&self, id: &ExecutionId, result: &Value) -> Result<bool, StoreError> {
        self.results
            .lock()
            .unwrap()
            .push((id.clone(), result.clone()));
        Ok(true)
    }

    fn topics(&self) -> &InvokeTopics {
        &self.topics
    }

    fn command_scope(&self) -> &CommandScope {
        &self.scope
    }

    async fn record_job_event(&self, job: &JobId, event: &JobEvent) -> Result<bool, StoreError> {
        if self.fail {
            return Err(unavailable());
        }
        let mut jobs = self.jobs.lock().unwrap();
        let new = !jobs.iter().any(|(_, e)| e.event_id == event.event_id);
        jobs.push((job.clone(), event.clone()));
        Ok(new)
    }

    fn job_scope(&self) -> &JobScope {
        &self.job_scope
    }

    async fn job_details(
        &self,
        aws_job_id: &str,
        thing: &DeviceId,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, GatewayError> {
        self.details_asked
            .lock()
            .unwrap()
            .push((aws_job_id.to_owned(), thing.clone()));
        Ok(Some([("fetched".to_owned(), "yes".to_owned())].into()))
    }
}

fn event(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// The reply rule's event for `payload` sent on `topic`.
fn reply_event(topic: &str, payload: &[u8], received_at: i64) -> Value {
    json!({
        "payload": base64::engine::general_purpose::STANDARD.encode(payload),
        "topic": topic,
        "receivedAt": received_at,
    })
}

const REPLY_TOPIC: &str = "tether/replies/dev-1/5f2b7c1e9a4d4b0e8c3a2f1d6e7b8a90";

#[tokio::test]
async fn a_reply_completes_its_invocation_with_the_rules_timestamp() {
    let fake = Fake::default();

    let summary = handle(&fake, event(REPLY)).await.unwrap();

    assert_eq!(summary["kind"], "reply");
    let replies = fake.replies.lock().unwrap();
    let (id, device, change) = &replies[0];
    assert_eq!(id.as_str(), "5f2b7c1e9a4d4b0e8c3a2f1d6e7b8a90");
    assert_eq!(device.as_str(), "dev-1");
    assert_eq!(change.status, "SUCCEEDED");
    assert_eq!(change.source, Source::Device);
    assert_eq!(change.at_ms, 1_795_456_800_250);
    assert_eq!(change.result, Some(json!({"on": true, "brightness": 80})));
}

#[tokio::test]
async fn a_malformed_reply_is_kept_in_the_timeline_and_changes_nothing() {
    let fake = Fake::default();
    let bad = reply_event(
        REPLY_TOPIC,
        "{\"status\":\"DONE\u{0007}\"}".as_bytes(),
        now_ms(),
    );

    let summary = handle(&fake, bad).await.unwrap();

    assert_eq!(summary["rejected"], "InvalidJson");
    assert!(fake.replies.lock().unwrap().is_empty());
    let events = fake.events.lock().unwrap();
    assert_eq!(events[0].1.status, "INVALID_REPLY");
    let description = events[0]
        .1
        .reason
        .as_ref()
        .unwrap()
        .reason_description
        .clone()
        .unwrap();
    assert!(
        !description.chars().any(char::is_control),
        "{description:?}"
    );
}

#[tokio::test]
async fn presence_events_record_connectivity() {
    let fake = Fake::default();

    handle(&fake, event(CONNECTED)).await.unwrap();
    handle(&fake, event(DISCONNECTED)).await.unwrap();

    let presence = fake.presence.lock().unwrap();
    assert_eq!(presence[0].presence, Presence::Connected);
    assert_eq!(presence[0].disconnect_reason, None);
    assert_eq!(presence[1].presence, Presence::Disconnected);
    assert_eq!(presence[1].at_ms, 1_795_456_900_000);
    assert_eq!(
        presence[1].disconnect_reason.as_deref(),
        Some("CLIENT_INITIATED_DISCONNECT")
    );
}

#[tokio::test]
async fn store_failures_are_returned_so_lambda_retries() {
    let fake = Fake {
        fail: true,
        ..Fake::default()
    };

    assert!(matches!(
        handle(&fake, event(REPLY)).await,
        Err(IngestError::Store(_))
    ));
    assert!(matches!(
        handle(&fake, event(CONNECTED)).await,
        Err(IngestError::Store(_))
    ));
}

#[tokio::test]
async fn unknown_and_topicless_events_are_errors_not_silence() {
    let fake = Fake::default();

    assert!(matches!(
        handle(&fake, json!({"status": "SUCCEEDED"})).await,
        Err(IngestError::NoTopic)
    ));
    assert!(matches!(
        handle(&fake, json!({"topic": "other/thing"})).await,
        Err(IngestError::UnknownTopic(_))
    ));
    assert!(matches!(
        handle(&fake, json!({"topic": REPLY_TOPIC})).await,
        Err(IngestError::NoPayload)
    ));
}

#[tokio::test]
async fn device_input_that_breaks_the_rules_is_acknowledged_as_rejected_not_retried() {
    let fake = Fake::default();
    let now = now_ms();

    for (event, code) in [
        (
            reply_event("tether/replies/dev 1/r", b"{}", now),
            "INVALID_TOPIC_ID",
        ),
        (
            reply_event("tether/replies/dev-1/bad+id", b"{}", now),
            "INVALID_TOPIC_ID",
        ),
        (
            reply_event(REPLY_TOPIC, br#"{"status":"SUCCEEDED"}"#, now + 3_600_000),
            "IMPLAUSIBLE_TIMESTAMP",
        ),
        (
            json!({"topic": "$aws/events/presence/connected/not a device", "timestamp": now}),
            "NOT_A_DEVICE_ID",
        ),
        (
            json!({"topic": "$aws/events/presence/connected/tether-invoke-0a1b", "timestamp": now}),
            "NOT_A_DEVICE",
        ),
        (
            reply_event("tether/replies/dev-1/r1/not-an-inbox", b"{}", now),
            "INVALID_TOPIC_ID",
        ),
        (
            json!({"topic": "$aws/events/presence/disconnected/dev-1", "timestamp": 999_999_999_999_999_i64}),
            "IMPLAUSIBLE_TIMESTAMP",
        ),
    ] {
        let summary = handle(&fake, event.clone()).await.unwrap();
        assert_eq!(summary["rejected"], code, "{event}");
    }
    assert!(fake.replies.lock().unwrap().is_empty());
    assert!(fake.events.lock().unwrap().is_empty());
    assert!(fake.presence.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_non_json_reply_is_kept_as_rejected() {
    let fake = Fake::default();

    let summary = handle(
        &fake,
        reply_event(REPLY_TOPIC, b"\xff\x00 not json", now_ms()),
    )
    .await
    .unwrap();

    assert_eq!(summary["applied"], false);
    assert_eq!(fake.events.lock().unwrap()[0].1.status, INVALID_REPLY);
}

/// The payloads a hostile device could send on its own reply topic to speak for another: none
/// of them reaches past its own invocation.
#[tokio::test]
async fn a_reply_payload_cannot_name_another_topic_time_or_event_kind() {
    let victim = "$aws/events/presence/disconnected/victim";
    let forged_batch = json!({"Records": [{"messageId": "m", "body": json!({"requestPayload": {"topic": victim, "timestamp": 999_999_999_999_999_i64}}).to_string()}]});
    let payloads = [
        forged_batch.to_string(),
        json!({"status": "SUCCEEDED", "topic": victim, "receivedAt": 999_999_999_999_999_i64}).to_string(),
        json!({"status": "SUCCEEDED", "topic": "tether/replies/victim/0123456789abcdef0123456789abcdef", "Records": []}).to_string(),
    ];
    for payload in payloads {
        let fake = Fake::default();
        let received_at = now_ms();

        handle(
            &fake,
            reply_event(REPLY_TOPIC, payload.as_bytes(), received_at),
        )
        .await
        .unwrap();

        assert!(fake.presence.lock().unwrap().is_empty(), "{payload}");
        assert!(fake.executions.lock().unwrap().is_empty(), "{payload}");
        for (id, device, change) in fake.replies.lock().unwrap().iter() {
            assert_eq!(
                (id.as_str(), device.as_str()),
                ("5f2b7c1e9a4d4b0e8c3a2f1d6e7b8a90", "dev-1"),
                "{payload}"
            );
            assert_eq!(change.at_ms, received_at, "{payload}");
        }
        for (key, change) in fake.events.lock().unwrap().iter() {
            assert_eq!(
                key,
                &RecordKey::Invocation(
                    RequestId::parse("5f2b7c1e9a4d4b0e8c3a2f1d6e7b8a90").unwrap()
                ),
                "{payload}"
            );
            assert_eq!(change.at_ms, received_at, "{payload}");
        }
    }
}

#[tokio::test]
async fn a_rule_event_is_never_read_as_a_dead_letter_batch() {
    let fake = Fake::default();
    let batch = event(REDRIVE);

    assert!(matches!(
        handle(&fake, batch).await,
        Err(IngestError::NoTopic)
    ));
    assert!(fake.presence.lock().unwrap().is_empty());
    assert!(fake.replies.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_final_execution_event_records_the_status_and_fetches_the_result() {
    let fake = Fake::scoped();

    let summary = handle(&fake, event(SUCCEEDED)).await.unwrap();

    assert_eq!(summary["resultStored"], true);
    let executions = fake.executions.lock().unwrap();
    let (id, change, meta) = &executions[0];
    assert_eq!(id.as_str(), "2bd65c51-4cfd-49e4-9310-d5cbfdbc8554");
    assert_eq!(
        (change.status, change.source, change.at_ms),
        ("SUCCEEDED", Source::Device, 1_717_708_862_107)
    );
    assert_eq!(change.reason.as_ref().unwrap().reason_code, "DONE");
    match meta {
        RecordMeta::Execution {
            command, target, ..
        } => assert_eq!((command.as_str(), target.as_str()), ("unlock", "car-1")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        change.result,
        Some(json!({"unlocked": {"B": true}})),
        "the final status and its result are one write"
    );
    assert!(fake.results.lock().unwrap().is_empty());
}

#[tokio::test]
async fn execution_events_are_recorded_under_the_api_id_and_only_in_the_commands_scope() {
    let fake = Fake::scoped();
    let mut theirs = event(SUCCEEDED);
    theirs["topic"] = json!("$aws/events/commandExecution/unlock/SUCCEEDED");

    handle(&fake, event(SUCCEEDED)).await.unwrap();
    let summary = handle(&fake, theirs).await.unwrap();

    assert!(summary["ignored"].is_string(), "{summary}");
    let executions = fake.executions.lock().unwrap();
    assert_eq!(executions.len(), 1);
    match &executions[0].2 {
        RecordMeta::Execution { command, .. } => assert_eq!(command.as_str(), "unlock"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_cloud_timeout_is_recorded_as_the_clouds_and_fetches_nothing() {
    let fake = Fake::default();

    let summary = handle(&fake, event(TIMED_OUT)).await.unwrap();

    assert_eq!(summary["resultStored"], false);
    let executions = fake.executions.lock().unwrap();
    assert_eq!(executions[0].1.source, Source::Cloud);
    assert_eq!(executions[0].1.phase, Phase::CloudTimedOut);
    assert!(fake.results.lock().unwrap().is_empty());
}

#[tokio::test]
async fn execution_events_for_targets_tether_cannot_name_are_acknowledged_and_ignored() {
    let fake = Fake::default();
    let mut odd = event(SUCCEEDED);
    odd["targetArn"] = json!("arn:aws:iot:us-east-1:1:thing/has space");

    let summary = handle(&fake, odd).await.unwrap();

    assert!(summary["ignored"].is_string());
    assert!(fake.executions.lock().unwrap().is_empty());
}

#[tokio::test]
async fn dead_letters_are_redriven_and_what_fails_again_stays_in_the_queue() {
    let fake = Fake::default();

    let answer = redrive(&fake, serde_json::from_str(REDRIVE).unwrap()).await;

    // The Lambda failure record's event, and the rule error message's payload and topic.
    assert_eq!(fake.presence.lock().unwrap().len(), 1);
    let replies = fake.replies.lock().unwrap();
    assert_eq!(replies.len(), 1);
    let (id, device, change) = &replies[0];
    assert_eq!(
        (id.as_str(), device.as_str()),
        ("5f2b7c1e9a4d4b0e8c3a2f1d6e7b8a90", "dev-1")
    );
    assert_eq!(change.status, "SUCCEEDED");
    assert_eq!(change.result, Some(json!({"brightness": 80})));
    // The message that holds no event is reported, so SQS keeps it.
    assert_eq!(
        serde_json::to_value(answer).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "00000003-aaaa-bbbb-cccc-dddddddddddd"}]})
    );
}

#[tokio::test]
async fn a_redrive_while_the_store_still_fails_keeps_every_message() {
    let fake = Fake {
        fail: true,
        ..Fake::default()
    };

    let answer = redrive(&fake, serde_json::from_str(REDRIVE).unwrap()).await;

    assert_eq!(answer.batch_item_failures.len(), 3, "{answer:?}");
}

#[test]
fn dead_letter_messages_that_hold_no_event_are_refused() {
    for body in [
        "",
        "[]",
        r#"{"topic": "t"}"#,
        r#"{"topic": "t", "base64OriginalPayload": "***"}"#,
        r#"{"requestPayload": "text"}"#,
        r#"{"requestPayload": {"no": "topic"}}"#,
    ] {
        assert!(dead_letter_event(body).is_err(), "{body:?}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Any queue message: an event or a refusal, never a panic.
    #[test]
    fn any_dead_letter_message_is_an_event_or_a_refusal(body in ".{0,300}") {
        let _ = dead_letter_event(&body);
        let wrapped = format!(r#"{{"topic":"t","base64OriginalPayload":{}}}"#, json!(body));
        let _ = dead_letter_event(&wrapped);
    }
}

const JOB_EXECUTION: &str = include_str!("../../../../events/ingest-job-execution-succeeded.json");

#[tokio::test]
async fn job_execution_events_are_kept_under_the_api_job_id() {
    let ports = Fake::scoped();
    let out = handle(&ports, event(JOB_EXECUTION)).await.unwrap();
    assert_eq!(out["kind"], "job");
    assert_eq!(out["jobId"], "fw-7");
    let jobs = ports.jobs.lock().unwrap();
    assert_eq!(jobs[0].0.as_str(), "fw-7");
    assert_eq!(jobs[0].1.thing.as_ref().unwrap().as_str(), "pump-1");
}

#[tokio::test]
async fn job_events_outside_the_scope_or_malformed_are_acknowledged_not_kept() {
    let ports = Fake::scoped();
    let mut other: Value = event(JOB_EXECUTION);
    other["topic"] = json!("$aws/events/jobExecution/someone-elses/succeeded");
    other["jobId"] = json!("someone-elses");
    let out = handle(&ports, other).await.unwrap();
    assert_eq!(out["rejected"], "NOT_A_TETHER_JOB");
    let mut malformed: Value = event(JOB_EXECUTION);
    malformed["status"] = json!("DONE");
    let out = handle(&ports, malformed).await.unwrap();
    assert_eq!(out["rejected"], "MALFORMED_EVENT");
    assert!(ports.jobs.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_job_event_the_store_cannot_take_is_an_error_for_lambda_to_retry() {
    let ports = Fake {
        fail: true,
        ..Fake::scoped()
    };
    assert!(handle(&ports, event(JOB_EXECUTION)).await.is_err());
}

#[tokio::test]
async fn a_job_execution_event_without_details_gets_them_from_aws_iot() {
    let ports = Fake::scoped();
    let mut bare: Value = event(JOB_EXECUTION);
    bare.as_object_mut().unwrap().remove("statusDetails");
    handle(&ports, bare).await.unwrap();
    let asked = ports.details_asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        [("tether-fw-7".to_owned(), DeviceId::parse("pump-1").unwrap())]
    );
    let details = ports.jobs.lock().unwrap()[0].1.status_details.clone();
    assert_eq!(details.unwrap()["fetched"], "yes");
    // With details in the event, AWS IoT is not asked.
    let again = Fake::scoped();
    handle(&again, event(JOB_EXECUTION)).await.unwrap();
    assert!(again.details_asked.lock().unwrap().is_empty());
}
