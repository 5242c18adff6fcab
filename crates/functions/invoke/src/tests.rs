//! The handler with fake ports: no network, no clock tricks beyond short real deadlines.

use std::collections::VecDeque;
use std::sync::Mutex;

use lambda_http::Body;
use serde_json::{json, Value};

use super::*;

const SAMPLE: &str = include_str!("../../../../events/invoke-request.json");

/// Fake ports: scripted answers, recorded calls.
struct Fake {
    config: Config,
    connected: Option<bool>,
    begin: Mutex<Option<Begin>>,
    publish_fails: bool,
    answers: Mutex<VecDeque<Option<Answer>>>,
    conclude_applies: bool,
    /// The first this many record reads fail as if DynamoDB were unavailable.
    failing_reads: Mutex<usize>,
    conclude_fails: bool,
    begin_fails: bool,
    /// What the record reads once a conclusion was attempted (a reply that raced it).
    after_conclude: Option<Answer>,
    published: Mutex<Vec<DeviceRequest>>,
    concluded: Mutex<Vec<(InvocationStatus, String)>>,
    begun: Mutex<Vec<(RequestId, String)>>,
    /// What SendDirectMessage answers, after `direct_after`.
    direct: Option<DirectOutcome>,
    direct_after: Duration,
    /// The first this many sends find the client not connected.
    absent_sends: Mutex<usize>,
    sent_direct: Mutex<Vec<(DeviceId, DeviceRequest, i32)>>,
    delivered_notes: Mutex<Vec<RequestId>>,
    /// What a retry finds in the timeline.
    timeline_delivered: bool,
    /// The instance has an inbox: the messages that come to it, each after its pause.
    inbox_reply: Option<Vec<(Duration, Vec<u8>)>>,
    listened: Mutex<usize>,
    /// What recording an inbox reply does: applied, refused, or an outage.
    record_outcome: Result<bool, ()>,
    recorded: Mutex<Vec<&'static str>>,
}

impl Fake {
    /// `DELIVERY=publish`: presence check and iot-data Publish.
    fn new() -> Self {
        Self {
            config: Config::from_lookup(|name| match name {
                "TABLE_NAME" => Some("t".to_owned()),
                "DELIVERY" => Some("publish".to_owned()),
                _ => None,
            })
            .unwrap(),
            connected: Some(true),
            begin: Mutex::new(None),
            publish_fails: false,
            answers: Mutex::new(VecDeque::new()),
            conclude_applies: true,
            failing_reads: Mutex::new(0),
            conclude_fails: false,
            begin_fails: false,
            after_conclude: None,
            published: Mutex::default(),
            concluded: Mutex::default(),
            begun: Mutex::default(),
            direct: None,
            direct_after: Duration::ZERO,
            absent_sends: Mutex::new(0),
            sent_direct: Mutex::default(),
            delivered_notes: Mutex::default(),
            timeline_delivered: false,
            inbox_reply: None,
            listened: Mutex::new(0),
            record_outcome: Ok(true),
            recorded: Mutex::default(),
        }
    }

    /// The instance's inbox gets `payload` `after` the call began to listen.
    fn inbox(self, after: Duration, payload: Value) -> Self {
        self.inbox_messages(vec![(after, payload)])
    }

    fn inbox_messages(self, messages: Vec<(Duration, Value)>) -> Self {
        Self {
            inbox_reply: Some(
                messages
                    .into_iter()
                    .map(|(after, payload)| (after, payload.to_string().into_bytes()))
                    .collect(),
            ),
            ..self
        }
    }

    /// `DELIVERY=direct` (the default), SendDirectMessage answering `outcome`.
    fn direct(outcome: DirectOutcome) -> Self {
        Self {
            config: Config::from_lookup(|name| (name == "TABLE_NAME").then(|| "t".to_owned()))
                .unwrap(),
            direct: Some(outcome),
            // No presence is read in direct mode: a stale "offline" must not matter.
            connected: Some(false),
            ..Self::new()
        }
    }

    /// The record reads: each call takes the next; the last one repeats.
    fn answers(self, answers: Vec<Option<Answer>>) -> Self {
        *self.answers.lock().unwrap() = answers.into();
        self
    }
}

fn answer(status: &str) -> Option<Answer> {
    Some(Answer {
        status: InvocationStatus::parse(status).unwrap(),
        result: Some(json!({"on": true})),
        status_reason: None,
    })
}

impl Ports for Fake {
    async fn connected(&self, _: &DeviceId) -> Result<Option<bool>, ApiError> {
        Ok(self.connected)
    }

    async fn begin(
        &self,
        id: &RequestId,
        _: &DeviceId,
        _: &MethodName,
        hash: &str,
        _: i64,
        _: i64,
    ) -> Result<Begin, ApiError> {
        self.begun
            .lock()
            .unwrap()
            .push((id.clone(), hash.to_owned()));
        if self.begin_fails {
            return Err(ApiError::UpstreamUnavailable { retry_after_s: 1 });
        }
        Ok(self.begin.lock().unwrap().take().unwrap_or(Begin::Created))
    }

    async fn publish(&self, request: &DeviceRequest) -> Result<(), ApiError> {
        if self.publish_fails {
            return Err(ApiError::UpstreamUnavailable { retry_after_s: 1 });
        }
        self.published.lock().unwrap().push(request.clone());
        Ok(())
    }

    async fn send_direct(
        &self,
        device: &DeviceId,
        request: &DeviceRequest,
        confirm_s: i32,
    ) -> Result<DirectOutcome, ApiError> {
        self.sent_direct
            .lock()
            .unwrap()
            .push((device.clone(), request.clone(), confirm_s));
        tokio::time::sleep(self.direct_after).await;
        {
            let mut absent = self.absent_sends.lock().unwrap();
            if *absent > 0 {
                *absent -= 1;
                return Ok(DirectOutcome::NotConnected);
            }
        }
        self.direct
            .ok_or(ApiError::UpstreamUnavailable { retry_after_s: 1 })
    }

    async fn note_delivered(&self, id: &RequestId, _: i64) -> Result<(), ApiError> {
        self.delivered_notes.lock().unwrap().push(id.clone());
        Ok(())
    }

    async fn was_delivered(&self, _: &RequestId) -> Result<bool, ApiError> {
        Ok(self.timeline_delivered)
    }

    async fn answer(&self, _: &RequestId) -> Result<Option<Answer>, ApiError> {
        {
            let mut failing = self.failing_reads.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(ApiError::UpstreamUnavailable { retry_after_s: 1 });
            }
        }
        if !self.concluded.lock().unwrap().is_empty() && self.after_conclude.is_some() {
            return Ok(self.after_conclude.clone());
        }
        let mut answers = self.answers.lock().unwrap();
        Ok(if answers.len() > 1 {
            answers.pop_front().flatten()
        } else {
            answers.front().cloned().flatten()
        })
    }

    async fn conclude(
        &self,
        _: &RequestId,
        status: InvocationStatus,
        reason: StatusReason,
    ) -> Result<bool, ApiError> {
        self.concluded
            .lock()
            .unwrap()
            .push((status, reason.reason_code));
        if self.conclude_fails {
            return Err(ApiError::UpstreamUnavailable { retry_after_s: 1 });
        }
        Ok(self.conclude_applies)
    }

    fn config(&self) -> &Config {
        &self.config
    }

    async fn listen(&self, _: &RequestId, _: &DeviceId, _: Duration) -> Option<Listening> {
        *self.listened.lock().unwrap() += 1;
        let messages = self.inbox_reply.clone()?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            for (after, payload) in messages {
                tokio::time::sleep(after).await;
                let _ = tx.send(payload);
            }
            // The sender stays open, as a live inbox's does.
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let inbox = tether_domain::topics::Inbox::parse("tether-invoke-test").unwrap();
        Some(Listening::from_channel(inbox, rx))
    }

    async fn record_reply(
        &self,
        _: &RequestId,
        _: &DeviceId,
        change: &StatusChange,
    ) -> Result<bool, ApiError> {
        self.recorded.lock().unwrap().push(change.status);
        self.record_outcome
            .map_err(|()| ApiError::UpstreamUnavailable { retry_after_s: 1 })
    }
}

fn sample() -> Request {
    lambda_http::request::from_str(SAMPLE).expect("the sample event parses")
}

fn with_body(body: &str) -> Request {
    let mut request = sample();
    *request.body_mut() = Body::Text(body.to_owned());
    request
}

fn body_json(response: &HttpResponse) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap()
}

#[tokio::test]
async fn answered_call_returns_the_devices_result() {
    let fake = Fake::new().answers(vec![
        answer("PENDING"),
        answer("PENDING"),
        answer("SUCCEEDED"),
    ]);

    let response = handle(&fake, sample()).await;

    assert_eq!(response.status(), 200);
    let body = body_json(&response);
    assert_eq!(body["status"], "SUCCEEDED");
    assert_eq!(body["result"], json!({"on": true}));
    assert_eq!(body["deviceId"], "dev-1");
    assert_eq!(body["method"], "setLight");
    assert!(body["elapsedMs"].is_u64());
    let published = fake.published.lock().unwrap();
    assert_eq!(published.len(), 1);
    let request_id = body["requestId"].as_str().unwrap();
    assert_eq!(
        published[0].topic,
        format!("tether/devices/dev-1/invoke/setLight/{request_id}")
    );
    assert_eq!(
        published[0].response_topic,
        format!("tether/replies/dev-1/{request_id}")
    );
    assert_eq!(published[0].correlation, request_id);
    assert_eq!(published[0].payload, r#"{"on":true}"#);
    assert_eq!(published[0].expiry_s, 1, "300 ms left rounds up to 1 s");
}

#[tokio::test]
async fn device_failure_is_a_200_with_the_devices_status() {
    let fake = Fake::new().answers(vec![Some(Answer {
        status: InvocationStatus::Failed,
        result: None,
        status_reason: Some(StatusReason::new("BULB_BROKEN", None)),
    })]);

    let response = handle(&fake, sample()).await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        body_json(&response)["statusReason"]["reasonCode"],
        "BULB_BROKEN"
    );
}

#[tokio::test]
async fn silence_ends_in_a_504_at_the_deadline_with_the_location() {
    let fake = Fake::new().answers(vec![answer("PENDING")]);
    let started = Instant::now();

    let response = handle(&fake, sample()).await;

    let waited = started.elapsed();
    assert_eq!(response.status(), 504);
    assert!(
        waited >= Duration::from_millis(300),
        "waited the whole timeout: {waited:?}"
    );
    let body = body_json(&response);
    assert_eq!(body["code"], "DEVICE_TIMEOUT");
    let id = body["requestId"].as_str().unwrap();
    assert_eq!(
        response.headers()[header::LOCATION],
        format!("/invocations/{id}").as_str()
    );
    assert_eq!(
        *fake.concluded.lock().unwrap(),
        vec![(
            InvocationStatus::TimedOut,
            NO_RESPONSE_FROM_DEVICE.to_owned()
        )]
    );
}

#[tokio::test]
async fn reads_that_fail_after_the_publish_are_polled_again() {
    let fake = Fake::new().answers(vec![answer("SUCCEEDED")]);
    *fake.failing_reads.lock().unwrap() = 2;

    let response = handle(&fake, sample()).await;

    assert_eq!(response.status(), 200, "{:?}", response.body());
    assert_eq!(body_json(&response)["result"], json!({"on": true}));
    assert_eq!(fake.published.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_store_down_after_the_publish_ends_in_the_504_not_a_503() {
    let mut fake = Fake::new();
    *fake.failing_reads.lock().unwrap() = usize::MAX;
    fake.conclude_fails = true;

    let response = handle(&fake, sample()).await;

    assert_eq!(response.status(), 504, "{:?}", response.body());
    assert_eq!(body_json(&response)["code"], "DEVICE_TIMEOUT");
    assert!(response.headers().contains_key(header::LOCATION));
    assert_eq!(fake.published.lock().unwrap().len(), 1, "published once");
    assert_eq!(
        fake.concluded.lock().unwrap().len(),
        1,
        "the timeout was tried"
    );
}

#[tokio::test]
async fn a_store_down_before_the_publish_is_a_503_and_nothing_is_sent() {
    let mut fake = Fake::new();
    fake.begin_fails = true;

    let response = handle(&fake, sample()).await;

    assert_eq!(response.status(), 503);
    assert_eq!(body_json(&response)["code"], "UPSTREAM_UNAVAILABLE");
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(fake.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_reply_that_beats_the_timeout_write_is_returned() {
    let mut fake = Fake::new().answers(vec![answer("PENDING")]);
    fake.conclude_applies = false;
    fake.after_conclude = answer("SUCCEEDED");
    let mut request = with_body(r#"{"method":"m","timeoutMs":100}"#);
    request
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());

    let response = handle(&fake, request).await;

    assert_eq!(response.status(), 200, "{:?}", response.body());
    assert_eq!(body_json(&response)["status"], "SUCCEEDED");
}

#[tokio::test]
async fn offline_device_is_refused_before_anything_is_written() {
    for connected in [None, Some(false)] {
        let mut fake = Fake::new();
        fake.connected = connected;

        let response = handle(&fake, sample()).await;

        assert_eq!(response.status(), 404);
        assert_eq!(body_json(&response)["code"], "DEVICE_NOT_CONNECTED");
        assert!(fake.begun.lock().unwrap().is_empty());
        assert!(fake.published.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn hostile_input_is_refused_before_any_publish() {
    let cases: Vec<(Request, u16, &str)> = vec![
        (with_body(r#"{"method":"a/b"}"#), 400, "VALIDATION_ERROR"),
        (with_body(r##"{"method":"#"}"##), 400, "VALIDATION_ERROR"),
        (
            with_body(r#"{"method":"m","extra":1}"#),
            400,
            "VALIDATION_ERROR",
        ),
        (
            with_body(r#"{"method":"m","timeoutMs":99}"#),
            400,
            "VALIDATION_ERROR",
        ),
        (with_body("{not json"), 400, "VALIDATION_ERROR"),
        (
            with_body(&format!(
                r#"{{"method":"m","payload":"{}"}}"#,
                "x".repeat(MAX_PAYLOAD_BYTES)
            )),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            {
                let mut r = sample();
                *r.uri_mut() = "/devices/dev+1/invoke".parse().unwrap();
                r
            },
            400,
            "VALIDATION_ERROR",
        ),
        (
            {
                let mut r = sample();
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
                r
            },
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            {
                let mut r = sample();
                *r.method_mut() = lambda_http::http::Method::GET;
                r
            },
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ];
    for (request, status, code) in cases {
        let fake = Fake::new();
        let path = request.uri().path().to_owned();

        let response = handle(&fake, request).await;

        assert_eq!(response.status(), status, "{path}: {:?}", response.body());
        assert_eq!(body_json(&response)["code"], code);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(fake.published.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn an_idempotent_retry_publishes_nothing_and_waits_for_the_same_answer() {
    let first = Fake::new().answers(vec![answer("SUCCEEDED")]);
    let mut request = sample();
    request
        .headers_mut()
        .insert("idempotency-key", "order-7".parse().unwrap());
    handle(&first, request).await;
    let (id, hash) = first.begun.lock().unwrap()[0].clone();

    let retry = Fake::new().answers(vec![answer("SUCCEEDED")]);
    *retry.begin.lock().unwrap() = Some(Begin::Existing {
        request_hash: Some(hash.clone()),
        device: Some("dev-1".into()),
    });
    let mut request = sample();
    request
        .headers_mut()
        .insert("idempotency-key", "order-7".parse().unwrap());
    let response = handle(&retry, request).await;

    assert_eq!(response.status(), 200);
    assert_eq!(body_json(&response)["requestId"], id.as_str());
    assert_eq!(
        retry.begun.lock().unwrap()[0].0,
        id,
        "same key, same device: same request id"
    );
    assert!(
        retry.published.lock().unwrap().is_empty(),
        "no second publish"
    );

    let conflict = Fake::new();
    *conflict.begin.lock().unwrap() = Some(Begin::Existing {
        request_hash: Some("other".into()),
        device: Some("dev-1".into()),
    });
    let mut request = sample();
    request
        .headers_mut()
        .insert("idempotency-key", "order-7".parse().unwrap());
    let response = handle(&conflict, request).await;
    assert_eq!(response.status(), 409);
    assert_eq!(body_json(&response)["code"], "CONFLICT");
}

#[tokio::test]
async fn a_failed_publish_is_recorded_and_answered_503() {
    let mut fake = Fake::new();
    fake.publish_fails = true;

    let response = handle(&fake, sample()).await;

    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(
        *fake.concluded.lock().unwrap(),
        vec![(InvocationStatus::Failed, "PUBLISH_FAILED".to_owned())]
    );
}

#[tokio::test]
async fn direct_delivery_needs_no_presence_and_keeps_the_puback_in_the_timeline() {
    let fake = Fake::direct(DirectOutcome::Delivered).answers(vec![
        answer("PENDING"),
        answer("PENDING"),
        answer("SUCCEEDED"),
    ]);

    let response = handle(&fake, sample()).await;

    assert_eq!(response.status(), 200, "{}", body_json(&response));
    let body = body_json(&response);
    assert_eq!(body["status"], "SUCCEEDED");
    assert!(fake.published.lock().unwrap().is_empty(), "not published");
    let sent = fake.sent_direct.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0.as_str(), "dev-1", "to the device's client id");
    assert_eq!(
        sent[0].2, 1,
        "confirmation within the time left (300 ms: 1 s)"
    );
    let request_id = body["requestId"].as_str().unwrap();
    assert_eq!(
        sent[0].1.topic,
        format!("tether/devices/dev-1/invoke/setLight/{request_id}")
    );
    assert_eq!(fake.delivered_notes.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_client_that_is_not_connected_is_a_404_at_once_and_the_record_is_closed() {
    let fake = Fake::direct(DirectOutcome::NotConnected).answers(vec![answer("PENDING")]);
    let started = Instant::now();

    let response = handle(&fake, sample()).await;

    assert_eq!(response.status(), 404);
    assert_eq!(body_json(&response)["code"], "DEVICE_NOT_CONNECTED");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "not at the deadline"
    );
    assert_eq!(
        *fake.concluded.lock().unwrap(),
        [(InvocationStatus::Failed, "DEVICE_NOT_CONNECTED".to_owned())]
    );
    assert!(fake.delivered_notes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_504_says_whether_the_device_got_the_request() {
    for (outcome, delivered) in [
        (DirectOutcome::Delivered, true),
        (DirectOutcome::NotAcknowledged, false),
    ] {
        let fake = Fake::direct(outcome).answers(vec![answer("PENDING")]);
        let response = handle(&fake, sample()).await;
        assert_eq!(response.status(), 504);
        let body = body_json(&response);
        assert_eq!(body["code"], "DEVICE_TIMEOUT");
        assert_eq!(body["delivered"], delivered, "{outcome:?}");
    }
    // Publish cannot know: the field is left out.
    let response = handle(&Fake::new().answers(vec![answer("PENDING")]), sample()).await;
    assert_eq!(response.status(), 504);
    assert!(body_json(&response).get("delivered").is_none());
}

#[tokio::test]
async fn an_answer_before_the_puback_is_returned_with_the_delivery_noted() {
    // The confirmation follows within the grace, or not: either way the answer proves it.
    for after in [20, 2000] {
        let fake = Fake {
            direct_after: Duration::from_millis(after),
            ..Fake::direct(DirectOutcome::Delivered).answers(vec![answer("SUCCEEDED")])
        };
        let started = Instant::now();

        let response = handle(&fake, sample()).await;

        assert_eq!(response.status(), 200);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "not held by the send"
        );
        assert_eq!(fake.delivered_notes.lock().unwrap().len(), 1, "{after} ms");
    }
}

#[tokio::test]
async fn the_deadline_is_kept_when_the_confirmation_is_slower() {
    let fake = Fake {
        direct_after: Duration::from_secs(3),
        ..Fake::direct(DirectOutcome::Delivered).answers(vec![answer("PENDING")])
    };
    let started = Instant::now();

    let response = handle(&fake, sample()).await;

    assert_eq!(response.status(), 504);
    assert_eq!(body_json(&response)["delivered"], false);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "300 ms, not the 3 s confirmation"
    );
}

#[tokio::test]
async fn a_failed_send_is_recorded_and_answered_503() {
    let fake = Fake {
        direct: None,
        ..Fake::direct(DirectOutcome::Delivered).answers(vec![answer("PENDING")])
    };

    let response = handle(&fake, sample()).await;

    assert_eq!(response.status(), 503);
    assert_eq!(
        *fake.concluded.lock().unwrap(),
        [(InvocationStatus::Failed, "SEND_FAILED".to_owned())]
    );
}

#[tokio::test]
async fn a_retry_sends_nothing_and_its_504_reads_the_delivery_from_the_timeline() {
    let fake = Fake {
        timeline_delivered: true,
        ..Fake::direct(DirectOutcome::Delivered).answers(vec![answer("PENDING")])
    };
    let mut request = sample();
    request
        .headers_mut()
        .insert("idempotency-key", "k-1".parse().unwrap());
    // The retry's hash must match the first call's: take it from a first run.
    let first = Fake::direct(DirectOutcome::Delivered).answers(vec![answer("PENDING")]);
    let _ = handle(&first, {
        let mut r = sample();
        r.headers_mut()
            .insert("idempotency-key", "k-1".parse().unwrap());
        r
    })
    .await;
    let hash = first.begun.lock().unwrap()[0].1.clone();
    *fake.begin.lock().unwrap() = Some(Begin::Existing {
        request_hash: Some(hash),
        device: Some("dev-1".into()),
    });

    let response = handle(&fake, request).await;

    assert_eq!(response.status(), 504);
    assert_eq!(body_json(&response)["delivered"], true);
    assert!(
        fake.sent_direct.lock().unwrap().is_empty(),
        "nothing sent again"
    );
}

mod inbox_replies {
    use super::*;

    fn body(response: &HttpResponse) -> Value {
        match response.body() {
            Body::Text(text) => serde_json::from_str(text).unwrap(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    fn succeeded() -> Value {
        json!({"status": "SUCCEEDED", "result": {"on": true}})
    }

    #[tokio::test]
    async fn a_reply_on_the_inbox_is_recorded_then_answered_without_the_poll() {
        let ports = Fake::direct(DirectOutcome::Delivered)
            .inbox(Duration::from_millis(5), succeeded())
            .answers(vec![None]);
        let response = handle(&ports, sample()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(&response)["status"], "SUCCEEDED");
        assert_eq!(body(&response)["result"], json!({"on": true}));
        assert_eq!(*ports.recorded.lock().unwrap(), vec!["SUCCEEDED"]);
        // The request named the inbox as its response topic.
        let sent = ports.sent_direct.lock().unwrap();
        assert!(
            sent[0].1.response_topic.ends_with("/tether-invoke-test"),
            "{}",
            sent[0].1.response_topic
        );
    }

    #[tokio::test]
    async fn a_reply_the_rule_path_recorded_first_is_answered_from_the_record() {
        let mut ports = Fake::direct(DirectOutcome::Delivered)
            .inbox(Duration::from_millis(5), succeeded())
            .answers(vec![None, answer("SUCCEEDED")]);
        ports.record_outcome = Ok(false);
        let response = handle(&ports, sample()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(&response)["status"], "SUCCEEDED");
    }

    #[tokio::test]
    async fn a_malformed_or_unrecordable_inbox_reply_falls_back_to_the_record() {
        for (payload, outcome) in [
            (json!({"status": "DONE"}), Ok(true)),
            (succeeded(), Err(())),
        ] {
            let mut ports = Fake::direct(DirectOutcome::Delivered)
                .inbox(Duration::from_millis(5), payload)
                .answers(vec![None, None, answer("FAILED")]);
            ports.record_outcome = outcome;
            let response = handle(&ports, sample()).await;
            assert_eq!(response.status(), StatusCode::OK);
            // The answer is what the record says (ingest's), never the unrecorded reply.
            assert_eq!(body(&response)["status"], "FAILED");
        }
    }

    #[tokio::test]
    async fn progress_on_the_inbox_is_left_to_ingest_and_the_answer_follows() {
        let ports = Fake::direct(DirectOutcome::Delivered)
            .inbox_messages(vec![
                (
                    Duration::from_millis(5),
                    json!({"status": "IN_PROGRESS", "statusReason": {"reasonCode": "HALFWAY"}}),
                ),
                (Duration::from_millis(20), succeeded()),
            ])
            .answers(vec![None]);
        let response = handle(&ports, sample()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(&response)["status"], "SUCCEEDED");
        assert_eq!(*ports.recorded.lock().unwrap(), vec!["SUCCEEDED"]);
    }

    #[tokio::test]
    async fn an_idempotent_retry_does_not_listen() {
        let key = |request: &mut Request| {
            request
                .headers_mut()
                .insert("idempotency-key", "order-8".parse().unwrap());
        };
        let first = Fake::direct(DirectOutcome::Delivered).answers(vec![answer("SUCCEEDED")]);
        let mut request = sample();
        key(&mut request);
        handle(&first, request).await;
        let (_, hash) = first.begun.lock().unwrap()[0].clone();

        let retry = Fake::direct(DirectOutcome::Delivered)
            .inbox(Duration::from_millis(5), succeeded())
            .answers(vec![answer("SUCCEEDED")]);
        *retry.begin.lock().unwrap() = Some(Begin::Existing {
            request_hash: Some(hash),
            device: Some("dev-1".into()),
        });
        let mut request = sample();
        key(&mut request);
        let response = handle(&retry, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(*retry.listened.lock().unwrap(), 0);
        assert!(retry.recorded.lock().unwrap().is_empty());
    }
}

mod connect_timeout {
    use super::*;

    fn waiting(connect_ms: u64) -> Request {
        with_body(&format!(
            r#"{{"method": "ping", "timeoutMs": 3000, "connectTimeoutMs": {connect_ms}}}"#
        ))
    }

    #[tokio::test]
    async fn a_device_that_connects_within_the_wait_gets_the_request() {
        // The device connects at about 400 ms and answers at 700 ms.
        let ports = Fake::direct(DirectOutcome::Delivered)
            .inbox(
                Duration::from_millis(700),
                json!({"status": "SUCCEEDED", "result": {"on": true}}),
            )
            .answers(vec![None]);
        *ports.absent_sends.lock().unwrap() = 2;
        let response = handle(&ports, waiting(1500)).await;
        assert_eq!(response.status(), 200);
        // Asked twice in vain, every 250 ms, then delivered.
        assert_eq!(ports.sent_direct.lock().unwrap().len(), 3);
        assert!(ports.concluded.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_device_that_never_connects_is_a_404_at_the_end_of_the_wait() {
        let ports = Fake::direct(DirectOutcome::NotConnected).answers(vec![None]);
        let started = Instant::now();
        let response = handle(&ports, waiting(600)).await;
        let waited = started.elapsed();
        assert_eq!(response.status(), 404);
        assert!(waited >= Duration::from_millis(500), "{waited:?}");
        assert!(ports.sent_direct.lock().unwrap().len() >= 3);
        assert_eq!(
            ports.concluded.lock().unwrap()[0],
            (InvocationStatus::Failed, "DEVICE_NOT_CONNECTED".to_owned())
        );
        // Without a wait: refused after one send.
        let at_once = Fake::direct(DirectOutcome::NotConnected).answers(vec![None]);
        assert_eq!(handle(&at_once, waiting(0)).await.status(), 404);
        assert_eq!(at_once.sent_direct.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_wait_cannot_outlast_the_deadline_and_publish_waits_too() {
        let response = handle(&Fake::direct(DirectOutcome::Delivered), waiting(3001)).await;
        assert_eq!(response.status(), 400);

        let mut offline = Fake::new();
        offline.connected = Some(false);
        let started = Instant::now();
        let response = handle(&offline, waiting(400)).await;
        assert_eq!(response.status(), 404);
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(offline.published.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_device_that_said_in_progress_got_the_request_even_without_a_puback() {
    // Publish: no PUBACK to see; the timeline's IN_PROGRESS says the device has it.
    let mut ports = Fake::new().answers(vec![None]);
    ports.timeline_delivered = true;
    let response = handle(&ports, with_body(r#"{"method": "ping", "timeoutMs": 200}"#)).await;
    assert_eq!(response.status(), 504);
    assert_eq!(body_json(&response)["delivered"], true);
    // Without it, Publish cannot know.
    let unknown = Fake::new().answers(vec![None]);
    let response = handle(
        &unknown,
        with_body(r#"{"method": "ping", "timeoutMs": 200}"#),
    )
    .await;
    assert!(body_json(&response).get("delivered").is_none());
    // Direct: no PUBACK by the deadline, but the device said it is working on it.
    let mut direct = Fake::direct(DirectOutcome::NotAcknowledged).answers(vec![None]);
    direct.timeline_delivered = true;
    direct.direct_after = Duration::from_secs(1);
    let response = handle(
        &direct,
        with_body(r#"{"method": "ping", "timeoutMs": 200}"#),
    )
    .await;
    assert_eq!(body_json(&response)["delivered"], true);
}
