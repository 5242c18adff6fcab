//! What a behaviour sends for one request, as a plan of steps.
//!
//! No I/O here: the device runs the plan (waits, publishes, drops its connection) and the unit
//! tests below check it message by message. The two protocols share one outline per behaviour
//! and differ only in how an answer is written:
//! - direct invocation: a [`DeviceReply`] on the request's MQTT 5 response topic with its
//!   correlation data, or on `{prefix}/replies/{deviceId}/{requestId}` when there is no response
//!   topic; progress is an `IN_PROGRESS` reply on the same topic, with its details as
//!   `statusReason` (`PROGRESS`, `50%`);
//! - Commands: a [`CommandResponse`] on `.../executions/{executionId}/response/json`, results in
//!   the device format (lower-case `s` / `b` / `bin`);
//! - Jobs: job execution updates ([`JobStep::Update`]: a status and `statusDetails`); the
//!   transport ([`crate::jobs`] over MQTT, `device/jobs.rs` over HTTPS) adds the
//!   `expectedVersion` and the `clientToken` when it sends one.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::Value;
use tether_domain::jobs::JobExecutionStatus;
use tether_domain::reply::{CommandResponse, DeviceReply, ReplyStatus, ResultValue};
use tether_domain::status::Lifecycle;
use tether_domain::topics::InvokeTopics;
use tether_domain::{DeviceId, ExecutionStatus, RequestId, StatusReason};
use tokio::time::Instant;

use crate::behaviour::Behaviour;

/// The content type of every answer.
pub const JSON: &str = "application/json";

/// The key under which a Commands echo carries the request payload.
pub const ECHO_KEY: &str = "payload";

/// The parts of a request that shape its answer.
#[derive(Debug, Clone)]
pub struct Request {
    pub payload: Bytes,
    pub received_at: Instant,
    /// Seconds left, as the broker delivered it.
    pub message_expiry: Option<u32>,
}

impl Request {
    /// The latest the request's deadline can be. The message expiry travels in whole seconds
    /// and brokers round it down when they forward it (and drop it below one second), so the
    /// real deadline lies within the second after `received_at + expiry`.
    pub fn deadline_bound(&self) -> Instant {
        let expiry = u64::from(self.message_expiry.unwrap_or(0));
        self.received_at + Duration::from_secs(expiry + 1)
    }
}

/// One message to publish (QoS 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub topic: String,
    pub payload: Bytes,
    pub properties: PublishProperties,
    /// The status it reports, for the counters.
    pub status: &'static str,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Sleep(Duration),
    SleepUntil(Instant),
    Send(Reply),
    /// Drop the connection and stay offline this long.
    Drop(Duration),
}

/// Whether a plan answers at all (`never` and `disconnect` do not).
pub fn answers(steps: &[Step]) -> bool {
    steps.iter().any(|s| matches!(s, Step::Send(_)))
}

enum Answer<'b> {
    Progress,
    Success,
    Failed(&'b StatusReason),
    Rejected(&'b StatusReason),
}

enum Outline<'b> {
    Sleep(Duration),
    SleepUntil(Instant),
    Answer(Answer<'b>),
    Drop(Duration),
}

fn outline<'b>(behaviour: &'b Behaviour, request: &Request) -> Vec<Outline<'b>> {
    let success = || Outline::Answer(Answer::Success);
    match behaviour {
        Behaviour::Echo => vec![success()],
        Behaviour::Delay(pause) => vec![Outline::Sleep(pause.pick()), success()],
        Behaviour::Fail(reason) => vec![Outline::Answer(Answer::Failed(reason))],
        Behaviour::Reject(reason) => vec![Outline::Answer(Answer::Rejected(reason))],
        Behaviour::Progress(pause) => vec![
            Outline::Answer(Answer::Progress),
            Outline::Sleep(*pause),
            success(),
        ],
        Behaviour::Never => Vec::new(),
        Behaviour::Twice => vec![success(), success()],
        Behaviour::Late(margin) => vec![
            Outline::SleepUntil(request.deadline_bound() + *margin),
            success(),
        ],
        Behaviour::Disconnect(offline) => vec![Outline::Drop(*offline)],
    }
}

fn render<'b>(
    outline: Vec<Outline<'b>>,
    mut write: impl FnMut(Answer<'b>) -> Option<Reply>,
) -> Vec<Step> {
    outline
        .into_iter()
        .filter_map(|step| match step {
            Outline::Sleep(d) => Some(Step::Sleep(d)),
            Outline::SleepUntil(at) => Some(Step::SleepUntil(at)),
            Outline::Drop(d) => Some(Step::Drop(d)),
            Outline::Answer(answer) => write(answer).map(Step::Send),
        })
        .collect()
}

/// The request payload as a direct-invocation result: its JSON, or the text as a JSON string
/// when it is not JSON; nothing for an empty payload.
pub fn echo_json(payload: &[u8]) -> Option<Value> {
    if payload.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned())),
    )
}

/// The request payload as a Commands result: `{"payload": {"s": <text>}}`, or `{"bin": <base64>}`
/// when it is not UTF-8 (a CBOR request); nothing for an empty payload. One key that always
/// passes the service's checks, whatever the payload's own keys are.
pub fn echo_result(payload: &[u8]) -> Option<BTreeMap<String, ResultValue>> {
    if payload.is_empty() {
        return None;
    }
    let value = match std::str::from_utf8(payload) {
        Ok(text) => ResultValue::S(text.to_owned()),
        Err(_) => ResultValue::Bin(base64::engine::general_purpose::STANDARD.encode(payload)),
    };
    Some(BTreeMap::from([(ECHO_KEY.to_owned(), value)]))
}

/// The method of a Commands request: a top-level `"method"` string of a JSON payload.
pub fn command_method(payload: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(payload)
        .ok()?
        .get("method")?
        .as_str()
        .map(str::to_owned)
}

/// Where a direct-invocation reply goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub topic: String,
    pub correlation_data: Option<Bytes>,
    /// No response topic came with the request (MQTT 3.1.1 style): the topic is built from the
    /// request topic.
    pub fallback: bool,
}

impl ReplyTo {
    /// The request's response topic, or `{prefix}/replies/{deviceId}/{requestId}`.
    pub fn of(
        topics: &InvokeTopics,
        device: &DeviceId,
        request_id: &RequestId,
        properties: &PublishProperties,
    ) -> Self {
        let correlation_data = properties.correlation_data.clone();
        match properties.response_topic.as_deref() {
            Some(topic) if !topic.is_empty() => Self {
                topic: topic.to_owned(),
                correlation_data,
                fallback: false,
            },
            _ => Self {
                topic: topics.reply(device, request_id),
                correlation_data,
                fallback: true,
            },
        }
    }
}

fn json_bytes(value: &impl serde::Serialize) -> Bytes {
    // Serializing these plain structs cannot fail; an empty payload would show up in tests.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// The plan for a direct invocation.
pub fn invoke(behaviour: &Behaviour, request: &Request, reply_to: &ReplyTo) -> Vec<Step> {
    let reply = |status: ReplyStatus,
                 result: Option<Value>,
                 reason: Option<&StatusReason>,
                 name: &'static str| {
        Reply {
            topic: reply_to.topic.clone(),
            payload: json_bytes(&DeviceReply {
                status,
                result,
                status_reason: reason.cloned(),
            }),
            properties: PublishProperties {
                content_type: Some(JSON.to_owned()),
                correlation_data: reply_to.correlation_data.clone(),
                ..Default::default()
            },
            status: name,
        }
    };
    let halfway = StatusReason::new(PROGRESS_REASON, Some("50%".to_owned()));
    render(outline(behaviour, request), |answer| match answer {
        Answer::Progress => Some(reply(
            ReplyStatus::InProgress,
            None,
            Some(&halfway),
            "IN_PROGRESS",
        )),
        Answer::Success => Some(reply(
            ReplyStatus::Succeeded,
            echo_json(&request.payload),
            None,
            "SUCCEEDED",
        )),
        Answer::Failed(reason) => Some(reply(ReplyStatus::Failed, None, Some(reason), "FAILED")),
        Answer::Rejected(reason) => {
            Some(reply(ReplyStatus::Rejected, None, Some(reason), "REJECTED"))
        }
    })
}

/// The plan for a Commands execution; `response_topic` is `.../response/json`.
pub fn command(behaviour: &Behaviour, request: &Request, response_topic: &str) -> Vec<Step> {
    let response = |status: ExecutionStatus,
                    reason: Option<&StatusReason>,
                    result: Option<BTreeMap<String, ResultValue>>| Reply {
        topic: response_topic.to_owned(),
        payload: json_bytes(&CommandResponse {
            status,
            status_reason: reason.cloned(),
            result,
        }),
        properties: PublishProperties {
            content_type: Some(JSON.to_owned()),
            ..Default::default()
        },
        status: status.as_str(),
    };
    render(outline(behaviour, request), |answer| {
        Some(match answer {
            Answer::Progress => response(ExecutionStatus::InProgress, None, None),
            Answer::Success => response(
                ExecutionStatus::Succeeded,
                None,
                echo_result(&request.payload),
            ),
            Answer::Failed(reason) => response(ExecutionStatus::Failed, Some(reason), None),
            Answer::Rejected(reason) => response(ExecutionStatus::Rejected, Some(reason), None),
        })
    })
}

/// The reason code of a direct invocation's progress report (`IN_PROGRESS`).
pub const PROGRESS_REASON: &str = "PROGRESS";

/// The `statusDetails` key of a job's progress (`"50%"`, `"100%"`).
pub const PROGRESS_KEY: &str = "progress";
/// The `statusDetails` key set to `"true"` on the success of a job the device took on again
/// after dropping its connection for it (`disconnect`).
pub const RESUMED_KEY: &str = "resumed";
/// The `statusDetails` keys of a failure or a rejection, from the behaviour's statusReason.
pub const REASON_CODE_KEY: &str = "reasonCode";
pub const REASON_DESCRIPTION_KEY: &str = "reasonDescription";

/// One step of a job execution's plan.
#[derive(Debug, Clone, PartialEq)]
pub enum JobStep {
    Sleep(Duration),
    SleepUntil(Instant),
    /// Update the execution to this status with these `statusDetails` (none when empty).
    Update(JobExecutionStatus, BTreeMap<String, String>),
    /// Drop the connection and stay offline this long.
    Drop(Duration),
}

/// What a device does with one job execution.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    pub steps: Vec<JobStep>,
    /// Keep going even when the cloud says the execution has ended (`late`): the device sends
    /// its update anyway, and the cloud refuses it.
    pub persist: bool,
}

impl JobPlan {
    /// Whether the plan finishes the execution (sends SUCCEEDED, FAILED or REJECTED).
    pub fn answers(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, JobStep::Update(status, _) if status.is_terminal()))
    }
}

fn details<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A failure or rejection reason as `statusDetails`: its code, and its description unless it
/// is empty (a `statusDetails` value has 1 to 1024 characters).
fn reason_details(reason: &StatusReason) -> BTreeMap<String, String> {
    let mut out = details([(REASON_CODE_KEY, reason.reason_code.as_str())]);
    if let Some(description) = reason.reason_description.as_deref() {
        if !description.is_empty() {
            out.insert(REASON_DESCRIPTION_KEY.to_owned(), description.to_owned());
        }
    }
    out
}

/// The plan for a job execution. `request` carries when the execution was taken on and, as its
/// message expiry, the seconds left before the cloud times it out
/// (`approximateSecondsBeforeTimedOut`), which is what `late` waits out. `resumed`: the device
/// dropped its connection for this very execution before (`disconnect`) and now finishes it.
pub fn job(behaviour: &Behaviour, request: &Request, resumed: bool) -> JobPlan {
    let succeeded = |resumed: bool| {
        let mut d = details([(PROGRESS_KEY, "100%")]);
        if resumed {
            d.insert(RESUMED_KEY.to_owned(), "true".to_owned());
        }
        JobStep::Update(JobExecutionStatus::Succeeded, d)
    };
    if resumed {
        return JobPlan {
            steps: vec![succeeded(true)],
            persist: false,
        };
    }
    let steps = outline(behaviour, request)
        .into_iter()
        .map(|step| match step {
            Outline::Sleep(d) => JobStep::Sleep(d),
            Outline::SleepUntil(at) => JobStep::SleepUntil(at),
            Outline::Drop(d) => JobStep::Drop(d),
            Outline::Answer(Answer::Progress) => JobStep::Update(
                JobExecutionStatus::InProgress,
                details([(PROGRESS_KEY, "50%")]),
            ),
            Outline::Answer(Answer::Success) => succeeded(false),
            Outline::Answer(Answer::Failed(reason)) => {
                JobStep::Update(JobExecutionStatus::Failed, reason_details(reason))
            }
            Outline::Answer(Answer::Rejected(reason)) => {
                JobStep::Update(JobExecutionStatus::Rejected, reason_details(reason))
            }
        })
        .collect();
    JobPlan {
        steps,
        persist: matches!(behaviour, Behaviour::Late(_)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::behaviour::Pause;

    fn request(payload: &str, expiry: Option<u32>) -> Request {
        Request {
            payload: Bytes::from(payload.to_owned()),
            received_at: Instant::now(),
            message_expiry: expiry,
        }
    }

    fn reply_to(response_topic: Option<&str>) -> ReplyTo {
        ReplyTo::of(
            &InvokeTopics::default(),
            &DeviceId::parse("dev-1").unwrap(),
            &RequestId::parse("r1").unwrap(),
            &PublishProperties {
                response_topic: response_topic.map(str::to_owned),
                correlation_data: Some(Bytes::from_static(b"r1")),
                ..Default::default()
            },
        )
    }

    fn sent(steps: &[Step]) -> Vec<(String, Value)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Send(r) => {
                    Some((r.topic.clone(), serde_json::from_slice(&r.payload).unwrap()))
                }
                _ => None,
            })
            .collect()
    }

    const RESPONSE: &str = "$aws/commands/things/dev-1/executions/e1/response/json";

    #[test]
    fn an_echo_reply_goes_to_the_response_topic_with_the_correlation_data() {
        let to = reply_to(Some("tether/replies/dev-1/r1"));

        let steps = invoke(&Behaviour::Echo, &request(r#"{"on":true}"#, Some(5)), &to);

        let [Step::Send(reply)] = steps.as_slice() else {
            panic!("one reply expected: {steps:?}");
        };
        assert_eq!(reply.topic, "tether/replies/dev-1/r1");
        assert_eq!(
            serde_json::from_slice::<Value>(&reply.payload).unwrap(),
            json!({"status": "SUCCEEDED", "result": {"on": true}})
        );
        assert_eq!(
            reply.properties.correlation_data.as_deref(),
            Some(&b"r1"[..])
        );
        assert_eq!(reply.properties.content_type.as_deref(), Some(JSON));
        assert!(!to.fallback);
    }

    #[test]
    fn without_a_response_topic_the_reply_topic_is_built_from_the_request() {
        let to = reply_to(None);
        let empty = reply_to(Some(""));

        assert_eq!(to.topic, "tether/replies/dev-1/r1");
        assert!(to.fallback);
        assert!(empty.fallback);
    }

    #[test]
    fn direct_invocation_behaviours_send_what_they_promise() {
        let to = reply_to(Some("t/r"));
        let req = request("not json", None);
        let reason = StatusReason::new("LOW", Some("low battery".into()));

        let fail = invoke(&Behaviour::Fail(reason.clone()), &req, &to);
        let reject = invoke(&Behaviour::Reject(reason), &req, &to);
        let twice = invoke(&Behaviour::Twice, &req, &to);
        let never = invoke(&Behaviour::Never, &req, &to);
        let progress = invoke(&Behaviour::Progress(Duration::from_millis(30)), &req, &to);
        let delay = invoke(
            &Behaviour::Delay(Pause::Fixed(Duration::from_millis(20))),
            &req,
            &to,
        );
        let disconnect = invoke(&Behaviour::Disconnect(Duration::from_millis(9)), &req, &to);

        assert_eq!(
            sent(&fail),
            [(
                "t/r".to_owned(),
                json!({"status": "FAILED", "statusReason": {"reasonCode": "LOW", "reasonDescription": "low battery"}})
            )]
        );
        assert_eq!(sent(&reject)[0].1["status"], "REJECTED");
        assert_eq!(
            sent(&twice),
            vec![
                (
                    "t/r".to_owned(),
                    json!({"status": "SUCCEEDED", "result": "not json"})
                );
                2
            ]
        );
        assert!(never.is_empty() && !answers(&never));
        assert_eq!(
            sent(&progress),
            [
                (
                    "t/r".to_owned(),
                    json!({"status": "IN_PROGRESS", "statusReason": {"reasonCode": "PROGRESS", "reasonDescription": "50%"}})
                ),
                (
                    "t/r".to_owned(),
                    json!({"status": "SUCCEEDED", "result": "not json"})
                ),
            ]
        );
        assert_eq!(progress[1], Step::Sleep(Duration::from_millis(30)));
        assert_eq!(delay[0], Step::Sleep(Duration::from_millis(20)));
        assert_eq!(disconnect, [Step::Drop(Duration::from_millis(9))]);
        assert!(!answers(&disconnect));
    }

    #[test]
    fn a_late_answer_waits_past_the_rounded_down_expiry_plus_the_margin() {
        let req = request("{}", Some(2));
        let no_expiry = request("{}", None);
        let late = Behaviour::Late(Duration::from_millis(300));

        let steps = invoke(&late, &req, &reply_to(None));
        let without = command(&late, &no_expiry, RESPONSE);

        assert_eq!(
            steps[0],
            Step::SleepUntil(req.received_at + Duration::from_millis(3300))
        );
        assert_eq!(
            without[0],
            Step::SleepUntil(no_expiry.received_at + Duration::from_millis(1300))
        );
        assert_eq!(sent(&steps).len(), 1);
    }

    #[test]
    fn commands_progress_reports_in_progress_then_succeeded_with_a_device_format_result() {
        let steps = command(
            &Behaviour::Progress(Duration::from_millis(10)),
            &request(r#"{"door":"front"}"#, Some(9)),
            RESPONSE,
        );

        assert_eq!(
            sent(&steps),
            [
                (RESPONSE.to_owned(), json!({"status": "IN_PROGRESS"})),
                (
                    RESPONSE.to_owned(),
                    json!({"status": "SUCCEEDED", "result": {"payload": {"s": r#"{"door":"front"}"#}}})
                ),
            ]
        );
        assert_eq!(steps[1], Step::Sleep(Duration::from_millis(10)));
        for (_, payload) in sent(&steps) {
            CommandResponse::parse(payload.to_string().as_bytes())
                .expect("what the device sends passes the service's checks");
        }
    }

    #[test]
    fn commands_failures_carry_the_reason_and_no_result() {
        let reason = StatusReason::new("DEVICE_TOO_BUSY", None);

        let steps = command(&Behaviour::Reject(reason), &request("{}", None), RESPONSE);

        assert_eq!(
            sent(&steps),
            [(
                RESPONSE.to_owned(),
                json!({"status": "REJECTED", "statusReason": {"reasonCode": "DEVICE_TOO_BUSY"}})
            )]
        );
    }

    #[test]
    fn echoed_payloads_keep_their_bytes() {
        assert_eq!(echo_json(b""), None);
        assert_eq!(echo_json(b"[1,2]"), Some(json!([1, 2])));
        assert_eq!(echo_result(b""), None);
        assert_eq!(
            echo_result(&[0xff, 0x00]).unwrap()[ECHO_KEY],
            ResultValue::Bin("/wA=".into())
        );
    }

    #[test]
    fn the_commands_method_is_a_top_level_method_string() {
        assert_eq!(
            command_method(br#"{"method":"reboot","x":1}"#).as_deref(),
            Some("reboot")
        );
        assert_eq!(command_method(br#"{"method":5}"#), None);
        assert_eq!(command_method(br#"{"a":{"method":"x"}}"#), None);
        assert_eq!(command_method(b"\xa1"), None);
    }

    fn job_updates(plan: &JobPlan) -> Vec<(JobExecutionStatus, Value)> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                JobStep::Update(status, details) => Some((*status, json!(details))),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn job_behaviours_become_updates_with_status_details() {
        use JobExecutionStatus::*;
        let req = request("", None);
        let reason = StatusReason::new("LOW_BATTERY", Some("below 10%".into()));

        let echo = job(&Behaviour::Echo, &req, false);
        let progress = job(&Behaviour::Progress(Duration::from_millis(40)), &req, false);
        let fail = job(&Behaviour::Fail(reason.clone()), &req, false);
        let reject = job(
            &Behaviour::Reject(StatusReason::new("BUSY", Some(String::new()))),
            &req,
            false,
        );
        let never = job(&Behaviour::Never, &req, false);
        let disconnect = job(
            &Behaviour::Disconnect(Duration::from_millis(9)),
            &req,
            false,
        );
        let resumed = job(&Behaviour::Disconnect(Duration::from_millis(9)), &req, true);

        assert_eq!(
            job_updates(&echo),
            [(Succeeded, json!({"progress": "100%"}))]
        );
        assert_eq!(
            job_updates(&progress),
            [
                (InProgress, json!({"progress": "50%"})),
                (Succeeded, json!({"progress": "100%"}))
            ]
        );
        assert_eq!(progress.steps[1], JobStep::Sleep(Duration::from_millis(40)));
        assert_eq!(
            job_updates(&fail),
            [(
                Failed,
                json!({"reasonCode": "LOW_BATTERY", "reasonDescription": "below 10%"})
            )]
        );
        assert_eq!(
            job_updates(&reject),
            [(Rejected, json!({"reasonCode": "BUSY"}))],
            "an empty description is left out"
        );
        assert!(never.steps.is_empty() && !never.answers());
        assert_eq!(disconnect.steps, [JobStep::Drop(Duration::from_millis(9))]);
        assert!(!disconnect.answers());
        assert_eq!(
            job_updates(&resumed),
            [(Succeeded, json!({"progress": "100%", "resumed": "true"}))]
        );
        assert!(echo.answers() && !echo.persist);
    }

    #[test]
    fn a_late_job_waits_out_the_execution_timeout_and_persists() {
        let req = request("", Some(4));

        let plan = job(&Behaviour::Late(Duration::from_millis(100)), &req, false);

        assert_eq!(
            plan.steps[0],
            JobStep::SleepUntil(req.received_at + Duration::from_millis(5100))
        );
        assert!(plan.persist && plan.answers());
    }
}
