//! `POST /devices/{deviceId}/invoke`: publish a method call to a device over MQTT and answer
//! with the device's reply, or a 504 at the deadline.
//!
//! The flow: validate everything before touching anything (a rejected request sends
//! nothing); write the PENDING record (so no request is ever sent without one); send the
//! request with the MQTT 5 response topic and the request id as correlation data; then poll the
//! record (strongly consistent reads, short first intervals, backing off) until `ingest` has
//! recorded the reply or the deadline passes. At the deadline the record becomes a cloud
//! TIMED_OUT, which a late reply still completes; a reply that wins that race is returned.
//!
//! How the request is sent (`DELIVERY`):
//! - `direct` (default): iot-data SendDirectMessage with confirmation, to the device's client
//!   id, concurrently with the wait. The device's PUBACK adds `DELIVERED` to the timeline; a
//!   client that is not connected is a 404 `DEVICE_NOT_CONNECTED` at once (authoritative: no
//!   presence read) and the record is closed as FAILED; a 504 says whether the device got the
//!   request (`delivered`).
//! - `publish`: refuse at once when the device is known to be offline (`CONNECTIVITY_CHECK`),
//!   then iot-data Publish on the request topic with QoS 1 and the time left as message
//!   expiry; whether the device got it cannot be known.
//!
//! How the reply comes back: with `REPLY_INBOX`, each warm instance holds one MQTT connection
//! subscribed to a reply space of its own ([`inbox`]); the request's response topic names it,
//! so the reply reaches the waiting call directly. The call records the reply with the same
//! conditional write `ingest` uses (whichever lands first wins; the other adds nothing) and
//! answers only once it is recorded. The reply topic still matches the reply rule, so `ingest`
//! records it too, and the record is still polled (less often): a lost or dead connection
//! makes a call slower, never unanswered. Without an inbox (or when it cannot be relied on),
//! the reply goes by the rule and the record is polled.
//!
//! With an `Idempotency-Key`, the request id is derived from the device and the key, so a retry
//! finds the same record, publishes nothing and waits for the same answer; the same key with
//! another body is a 409.

use std::future::Future;
use std::time::{Duration, Instant};

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::Request;
use tether_adapters::config::{Config, ConnectivityCheck, Delivery};
use tether_adapters::http::{
    caller, digest, idempotency_key, json, json_body, problem, route, upstream, Function,
    HttpResponse,
};
use tether_adapters::iot::{DeviceRequest, DirectOutcome, IotGateway};
use tether_domain::api::{Invocation, InvokeRequest, InvokeResponse, MAX_PAYLOAD_BYTES};
use tether_domain::clock::now_ms;
use tether_domain::reply::DeviceReply;
use tether_domain::status::{Lifecycle, NO_RESPONSE_FROM_DEVICE};
use tether_domain::{
    ApiError, DeviceId, InvocationStatus, MethodName, Phase, RequestId, Source, StatusReason,
};
use tether_store::{Begin, StatusChange, Store};

/// A request body is refused before parsing above this size: the payload limit plus room for
/// the other fields.
const MAX_BODY_BYTES: usize = MAX_PAYLOAD_BYTES + 4 * 1024;
/// Polling of the record: first interval, growth factor, ceiling.
const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(100);
/// The same while the reply may come to the inbox: the poll is only the fallback.
const INBOX_FIRST_POLL: Duration = Duration::from_millis(50);
const INBOX_MAX_POLL: Duration = Duration::from_millis(250);
/// Longest a call waits for the inbox to prove its connection (after a quiet spell).
const INBOX_PROBE: Duration = Duration::from_millis(200);
/// With `connectTimeoutMs`: how often a device that is not connected is looked for again.
const CONNECT_POLL: Duration = Duration::from_millis(250);

pub mod inbox;

use inbox::{Inbox, Listening};

/// A record as the wait loop sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: InvocationStatus,
    pub result: Option<serde_json::Value>,
    pub status_reason: Option<StatusReason>,
}

impl Answer {
    fn is_final(&self) -> bool {
        self.status.phase(Source::Device) == Phase::Terminal
            && self.status != InvocationStatus::TimedOut
    }
}

/// What the handler needs from the world. Errors are already API errors (the adapter logs
/// internal causes).
pub trait Ports: Sync {
    /// Whether the device is connected: `None` when never seen.
    fn connected(
        &self,
        device: &DeviceId,
    ) -> impl Future<Output = Result<Option<bool>, ApiError>> + Send;
    fn begin(
        &self,
        id: &RequestId,
        device: &DeviceId,
        method: &MethodName,
        hash: &str,
        at_ms: i64,
        deadline_ms: i64,
    ) -> impl Future<Output = Result<Begin, ApiError>> + Send;
    fn publish(&self, request: &DeviceRequest)
        -> impl Future<Output = Result<(), ApiError>> + Send;
    /// SendDirectMessage with confirmation to the device's client, waiting at most
    /// `confirm_s` for its PUBACK.
    fn send_direct(
        &self,
        device: &DeviceId,
        request: &DeviceRequest,
        confirm_s: i32,
    ) -> impl Future<Output = Result<DirectOutcome, ApiError>> + Send;
    /// Keeps `DELIVERED` in the invocation's timeline.
    fn note_delivered(
        &self,
        id: &RequestId,
        at_ms: i64,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Whether the invocation's timeline has `DELIVERED` or the device's `IN_PROGRESS`.
    fn was_delivered(&self, id: &RequestId) -> impl Future<Output = Result<bool, ApiError>> + Send;
    fn answer(
        &self,
        id: &RequestId,
    ) -> impl Future<Output = Result<Option<Answer>, ApiError>> + Send;
    /// Writes a cloud-side final status (TIMED_OUT at the deadline, FAILED when the publish
    /// failed); `false` when the record had already moved on.
    fn conclude(
        &self,
        id: &RequestId,
        status: InvocationStatus,
        reason: StatusReason,
    ) -> impl Future<Output = Result<bool, ApiError>> + Send;
    fn config(&self) -> &Config;
    /// Registers the call for its reply on this instance's inbox, if there is one that can be
    /// relied on (checked within `probe`).
    fn listen(
        &self,
        id: &RequestId,
        device: &DeviceId,
        probe: Duration,
    ) -> impl Future<Output = Option<Listening>> + Send;
    /// Records a device's reply as `ingest` does; `true` when the record now shows it.
    fn record_reply(
        &self,
        id: &RequestId,
        device: &DeviceId,
        change: &StatusChange,
    ) -> impl Future<Output = Result<bool, ApiError>> + Send;
}

/// The real ports: DynamoDB, AWS IoT and the instance's inbox.
pub struct Deps {
    pub store: Store,
    pub iot: IotGateway,
    pub config: Config,
    pub inbox: Option<Inbox>,
}

impl Ports for Deps {
    async fn connected(&self, device: &DeviceId) -> Result<Option<bool>, ApiError> {
        match self.config.connectivity {
            ConnectivityCheck::Off => Ok(Some(true)),
            ConnectivityCheck::Iot => self
                .iot
                .is_connected(device.as_str())
                .await
                .map_err(upstream),
            ConnectivityCheck::Presence => Ok(self
                .store
                .connectivity(device)
                .await
                .map_err(upstream)?
                .map(|c| c.connected)),
        }
    }

    async fn begin(
        &self,
        id: &RequestId,
        device: &DeviceId,
        method: &MethodName,
        hash: &str,
        at_ms: i64,
        deadline_ms: i64,
    ) -> Result<Begin, ApiError> {
        self.store
            .begin_invocation(id, device, method, hash, at_ms, deadline_ms)
            .await
            .map_err(upstream)
    }

    async fn publish(&self, request: &DeviceRequest) -> Result<(), ApiError> {
        self.iot.publish(request).await.map_err(upstream)
    }

    async fn send_direct(
        &self,
        device: &DeviceId,
        request: &DeviceRequest,
        confirm_s: i32,
    ) -> Result<DirectOutcome, ApiError> {
        self.iot
            .send_direct(device.as_str(), request, confirm_s)
            .await
            .map_err(upstream)
    }

    async fn note_delivered(&self, id: &RequestId, at_ms: i64) -> Result<(), ApiError> {
        self.store
            .note_delivered(id, at_ms)
            .await
            .map(|_| ())
            .map_err(upstream)
    }

    async fn was_delivered(&self, id: &RequestId) -> Result<bool, ApiError> {
        self.store.was_delivered(id).await.map_err(upstream)
    }

    async fn answer(&self, id: &RequestId) -> Result<Option<Answer>, ApiError> {
        let record = self.store.invocation_status(id).await.map_err(upstream)?;
        Ok(record.map(|r| Answer {
            status: r.status,
            result: r.result,
            status_reason: r.status_reason,
        }))
    }

    async fn conclude(
        &self,
        id: &RequestId,
        status: InvocationStatus,
        reason: StatusReason,
    ) -> Result<bool, ApiError> {
        let change = StatusChange::new(status, Source::Cloud, now_ms()).with_reason(Some(reason));
        let key = tether_store::RecordKey::Invocation(id.clone());
        Ok(self
            .store
            .apply(&key, &change, None)
            .await
            .map_err(upstream)?
            .applied)
    }

    fn config(&self) -> &Config {
        &self.config
    }

    async fn listen(
        &self,
        id: &RequestId,
        device: &DeviceId,
        probe: Duration,
    ) -> Option<Listening> {
        match &self.inbox {
            Some(inbox) => inbox.listen(id, device, probe).await,
            None => None,
        }
    }

    async fn record_reply(
        &self,
        id: &RequestId,
        device: &DeviceId,
        change: &StatusChange,
    ) -> Result<bool, ApiError> {
        self.store
            .apply_reply(id, device, change)
            .await
            .map(|outcome| outcome.applied)
            .map_err(upstream)
    }
}

/// The Lambda handler: every outcome is a response; errors become problem+json.
#[tracing::instrument(skip_all, fields(path = %request.uri().path()))]
pub async fn handle(ports: &impl Ports, request: Request) -> HttpResponse {
    match invoke(ports, &request, Instant::now()).await {
        Ok(response) => response,
        Err(err) => {
            let mut response = problem(&err);
            if let ApiError::DeviceTimeout { request_id, .. } = &err {
                if let Ok(location) = HeaderValue::from_str(&format!("/invocations/{request_id}")) {
                    response.headers_mut().insert(header::LOCATION, location);
                }
            }
            response
        }
    }
}

/// A call that passed validation, under the id it is recorded with.
struct Call {
    device: DeviceId,
    invocation: Invocation,
    id: RequestId,
    /// Digest of what was asked: a retry under the same idempotency key must ask the same.
    hash: String,
    deadline: Instant,
    /// Until when a device that is not connected is waited for (`connectTimeoutMs`).
    connect_by: Instant,
}

async fn invoke(
    ports: &impl Ports,
    request: &Request,
    started: Instant,
) -> Result<HttpResponse, ApiError> {
    let call = accept(request, started)?;
    let direct = ports.config().delivery == Delivery::Direct;
    if !direct {
        wait_connected(ports, &call).await?;
    }
    let created = begin(ports, &call).await?;
    // A retry sent nothing: its reply, if any, went to the first call's inbox.
    let listening = match created {
        true => {
            let left = call.deadline.saturating_duration_since(Instant::now());
            ports
                .listen(&call.id, &call.device, INBOX_PROBE.min(left / 4))
                .await
        }
        false => None,
    };
    let (answer, delivered) = if created && direct {
        send_and_wait(ports, &call, listening).await?
    } else {
        if created {
            publish(ports, &call, listening.as_ref()).await?;
        }
        (wait(ports, &call, listening).await?, None)
    };
    if let Some(answer) = answer {
        return Ok(answered(&call, answer, started));
    }
    let delivered = match delivered {
        Some(true) => Some(true),
        // No PUBACK seen (or none to see: a retry sent nothing itself, Publish has none): the
        // timeline says whether it came, or whether the device said it is working on it.
        known => match ports.was_delivered(&call.id).await {
            Ok(true) => Some(true),
            Ok(false) if direct => Some(false),
            _ => known,
        },
    };
    time_out(ports, &call, started, delivered).await
}

/// Direct delivery: sends the request (SendDirectMessage with confirmation) while waiting for
/// the answer. Returns the answer (`None` at the deadline) and whether the device acknowledged
/// the request.
async fn send_and_wait(
    ports: &impl Ports,
    call: &Call,
    listening: Option<Listening>,
) -> Result<(Option<Answer>, Option<bool>), ApiError> {
    let message = device_request(ports, call, listening.as_ref());
    // The send and what it came to (the DELIVERED entry) run beside the wait, so a reply that
    // comes meanwhile is recorded without waiting for that write.
    let send = async {
        sent(
            ports,
            call,
            send_when_connected(ports, call, &message).await,
        )
        .await
    };
    let waiting = wait(ports, call, listening);
    tokio::pin!(send, waiting);
    let mut delivered: Option<bool> = None;
    let mut answer: Option<Option<Answer>> = None;
    while delivered.is_none() || answer.is_none() {
        tokio::select! {
            outcome = &mut send, if delivered.is_none() => {
                delivered = Some(outcome?);
            }
            waited = &mut waiting, if answer.is_none() => {
                let waited = waited?;
                if delivered.is_none() {
                    delivered = Some(if waited.is_some() {
                        // The device answered, so it got the request; its PUBACK, sent with
                        // the answer, is moments away: kept when it comes within 100 ms, else
                        // noted now, since the answer proves it.
                        match tokio::time::timeout(Duration::from_millis(100), &mut send).await {
                            Ok(outcome) => outcome?,
                            Err(_) => {
                                let _ = ports.note_delivered(&call.id, now_ms()).await;
                                true
                            }
                        }
                    } else {
                        // The deadline passed with no PUBACK yet: not delivered in time. The
                        // caller's deadline is kept; the confirmation is not waited for.
                        false
                    });
                }
                answer = Some(waited);
            }
        }
    }
    Ok((answer.flatten(), delivered))
}

/// SendDirectMessage with confirmation (the window: the time left, 1 to 15 s). A client that
/// is not connected is asked for again every [`CONNECT_POLL`] until the call's connect
/// deadline (`connectTimeoutMs`), then it is the answer.
async fn send_when_connected(
    ports: &impl Ports,
    call: &Call,
    message: &DeviceRequest,
) -> Result<DirectOutcome, ApiError> {
    loop {
        let left = call.deadline.saturating_duration_since(Instant::now());
        let confirm_s = i32::try_from(left.as_millis().div_ceil(1000)).unwrap_or(15);
        match ports
            .send_direct(&call.device, message, confirm_s.clamp(1, 15))
            .await
        {
            Ok(DirectOutcome::NotConnected) if Instant::now() + CONNECT_POLL <= call.connect_by => {
                tokio::time::sleep(CONNECT_POLL).await;
            }
            outcome => return outcome,
        }
    }
}

/// `DELIVERY=publish`: the device must be known to be connected, or become so by the call's
/// connect deadline (`connectTimeoutMs`, looked for every [`CONNECT_POLL`]).
async fn wait_connected(ports: &impl Ports, call: &Call) -> Result<(), ApiError> {
    loop {
        if ports.connected(&call.device).await? == Some(true) {
            return Ok(());
        }
        if Instant::now() + CONNECT_POLL > call.connect_by {
            return Err(ApiError::DeviceNotConnected(call.device.to_string()));
        }
        tokio::time::sleep(CONNECT_POLL).await;
    }
}

/// What a direct send came to: delivered (kept in the timeline) or not; a client that is not
/// connected, or a send that failed, closes the record as FAILED and is the answer.
async fn sent(
    ports: &impl Ports,
    call: &Call,
    outcome: Result<DirectOutcome, ApiError>,
) -> Result<bool, ApiError> {
    let id = &call.id;
    match outcome {
        Ok(DirectOutcome::Delivered) => {
            if let Err(err) = ports.note_delivered(id, now_ms()).await {
                tracing::warn!(request_id = %id, error = %err, "DELIVERED could not be kept in the timeline");
            }
            Ok(true)
        }
        Ok(DirectOutcome::NotAcknowledged) => {
            tracing::info!(request_id = %id, "the device did not acknowledge the request");
            Ok(false)
        }
        Ok(DirectOutcome::NotConnected) => {
            let reason = StatusReason::new(
                "DEVICE_NOT_CONNECTED",
                Some("the device's MQTT client was not connected: nothing was sent".into()),
            );
            let _ = ports.conclude(id, InvocationStatus::Failed, reason).await;
            Err(ApiError::DeviceNotConnected(call.device.to_string()))
        }
        Err(err) => {
            let reason = StatusReason::new(
                "SEND_FAILED",
                Some("the request could not be sent to AWS IoT".into()),
            );
            let _ = ports.conclude(id, InvocationStatus::Failed, reason).await;
            Err(err)
        }
    }
}

/// Validates everything the request carries and gives the call its id: random, or derived
/// from the idempotency key.
fn accept(request: &Request, started: Instant) -> Result<Call, ApiError> {
    let (_, captures) = route(Function::Invoke, request.method(), request.uri().path())?;
    let device = DeviceId::parse(captures[0])?;
    let invocation = json_body::<InvokeRequest>(request, MAX_BODY_BYTES)?.validate()?;
    let key = idempotency_key(request)?;
    let deadline = started + Duration::from_millis(invocation.timeout_ms);
    let connect_by = started + Duration::from_millis(invocation.connect_timeout_ms);
    let hash = digest(&[
        invocation.method.as_str(),
        &invocation.payload,
        &invocation.timeout_ms.to_string(),
    ]);
    let id = match key {
        // 128 bits of the digest: ids stay short and fit the topic rules. The caller is part
        // of it: another caller's same key is another request.
        Some(key) => RequestId::parse(
            &digest(&["idempotency", &caller(request), device.as_str(), key])[..32],
        )?,
        None => RequestId::random(),
    };
    tracing::info!(device = %device, method = %invocation.method, request_id = %id, timeout_ms = invocation.timeout_ms, "invoke");
    Ok(Call {
        device,
        invocation,
        id,
        hash,
        deadline,
        connect_by,
    })
}

/// Writes the PENDING record; `true` when it is new (the request is to be sent), `false` for an
/// idempotent retry, which finds the record and sends nothing; the same key with another
/// request is a 409.
async fn begin(ports: &impl Ports, call: &Call) -> Result<bool, ApiError> {
    let at_ms = now_ms();
    let deadline_ms = at_ms.saturating_add(
        i64::try_from(
            call.deadline
                .saturating_duration_since(Instant::now())
                .as_millis(),
        )
        .unwrap_or(i64::MAX),
    );
    let (id, device) = (&call.id, &call.device);
    match ports
        .begin(
            id,
            device,
            &call.invocation.method,
            &call.hash,
            at_ms,
            deadline_ms,
        )
        .await?
    {
        Begin::Created => Ok(true),
        Begin::Existing {
            request_hash,
            device: owner,
        } => {
            if request_hash.as_deref() != Some(call.hash.as_str())
                || owner.as_deref() != Some(device.as_str())
            {
                return Err(ApiError::Conflict(
                    "Idempotency-Key was used with a different request".into(),
                ));
            }
            tracing::info!(request_id = %id, "idempotent retry: waiting for the existing invocation");
            Ok(false)
        }
    }
}

/// The request as the device gets it, with the time left as its expiry; its response topic
/// names the inbox that waits for it, if any.
fn device_request(ports: &impl Ports, call: &Call, listening: Option<&Listening>) -> DeviceRequest {
    let (id, device) = (&call.id, &call.device);
    let topics = &ports.config().topics;
    let left = call.deadline.saturating_duration_since(Instant::now());
    let response_topic = match listening {
        Some(listening) => topics.reply_to(device, id, listening.inbox()),
        None => topics.reply(device, id),
    };
    DeviceRequest {
        topic: topics.request(device, &call.invocation.method, id),
        payload: call.invocation.payload.clone(),
        response_topic,
        correlation: id.to_string(),
        expiry_s: left.as_millis().div_ceil(1000) as i64,
    }
}

/// Publishes the request (`DELIVERY=publish`); a failed publish closes the record as FAILED.
async fn publish(
    ports: &impl Ports,
    call: &Call,
    listening: Option<&Listening>,
) -> Result<(), ApiError> {
    let id = &call.id;
    let message = device_request(ports, call, listening);
    if let Err(err) = ports.publish(&message).await {
        let reason = StatusReason::new(
            "PUBLISH_FAILED",
            Some("the request could not be published to AWS IoT".into()),
        );
        let _ = ports.conclude(id, InvocationStatus::Failed, reason).await;
        return Err(err);
    }
    Ok(())
}

/// At the deadline: records the cloud TIMED_OUT and answers 504, unless a reply won the race
/// with the deadline, which is then the answer.
async fn time_out(
    ports: &impl Ports,
    call: &Call,
    started: Instant,
    delivered: Option<bool>,
) -> Result<HttpResponse, ApiError> {
    let id = &call.id;
    let timed_out = match ports
        .conclude(
            id,
            InvocationStatus::TimedOut,
            StatusReason::new(NO_RESPONSE_FROM_DEVICE, None),
        )
        .await
    {
        Ok(applied) => applied,
        // The device has the request: the caller gets the timeout it is owed, not a 503 that
        // invites a retry. The record stays open; a late reply still completes it.
        Err(err) if err.retry_after().is_some() => {
            tracing::warn!(request_id = %id, "the timeout could not be recorded; the record stays open");
            true
        }
        Err(err) => return Err(err),
    };
    if !timed_out {
        // The reply won the race with the deadline.
        if let Ok(Some(answer)) = ports.answer(id).await.map(|a| a.filter(Answer::is_final)) {
            return Ok(answered(call, answer, started));
        }
    }
    Err(ApiError::DeviceTimeout {
        device: call.device.to_string(),
        request_id: id.to_string(),
        timeout_ms: call.invocation.timeout_ms,
        delivered,
    })
}

/// Waits for the answer until the deadline: the reply on the inbox, if the call listens there,
/// and the record, polled. The request is out by now, so a read that fails and may succeed
/// later is polled again rather than answered with a 503: a caller told to retry would send
/// the device the request twice.
async fn wait(
    ports: &impl Ports,
    call: &Call,
    mut listening: Option<Listening>,
) -> Result<Option<Answer>, ApiError> {
    let (id, deadline) = (&call.id, call.deadline);
    let (mut interval, max_interval) = match listening {
        Some(_) => (INBOX_FIRST_POLL, INBOX_MAX_POLL),
        None => (FIRST_POLL, MAX_POLL),
    };
    let mut read_now = listening.is_none();
    loop {
        if read_now {
            match ports.answer(id).await {
                Ok(Some(answer)) if answer.is_final() => return Ok(Some(answer)),
                Ok(_) => {}
                Err(err) if err.retry_after().is_some() => {
                    tracing::warn!(request_id = %id, error = %err, "reading the record failed; polling on");
                }
                Err(err) => return Err(err),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let pause = tokio::time::sleep(interval.min(left));
        read_now = true;
        match listening.as_mut() {
            Some(inbox) => {
                tokio::select! {
                    () = pause => {}
                    reply = inbox.reply() => {
                        read_now = false;
                        // A reply that was not the answer (progress, malformed, not recordable
                        // now) leaves the wait to the next one and to the record.
                        if reply.is_none() {
                            listening = None;
                        }
                        if let Some(answer) = take_reply(ports, call, reply).await? {
                            return Ok(Some(answer));
                        }
                    }
                }
            }
            None => pause.await,
        }
        if Instant::now() >= deadline {
            // No last read: the TIMED_OUT write is conditional on the record being open, so
            // a reply that arrived meanwhile still wins, one round trip sooner.
            return Ok(None);
        }
        if read_now {
            interval = (interval * 3 / 2).min(max_interval);
        }
    }
}

/// A reply that came to the inbox: recorded as `ingest` records it, and the answer once the
/// record shows it (the same reply by the rule may have been recorded first: then the record
/// is the answer). A reply that is not a valid answer, or that cannot be recorded now, is left
/// to `ingest` (which records malformed replies as rejected) and the wait goes on.
async fn take_reply(
    ports: &impl Ports,
    call: &Call,
    payload: Option<Vec<u8>>,
) -> Result<Option<Answer>, ApiError> {
    let id = &call.id;
    let Some(payload) = payload else {
        return Ok(None);
    };
    let reply = match DeviceReply::parse(&payload) {
        Ok(reply) => reply,
        Err(problem) => {
            tracing::info!(request_id = %id, error = %problem, "a reply on the inbox that is not an answer; left to ingest");
            return Ok(None);
        }
    };
    if !reply.status.is_final() {
        // Progress is not an answer: `ingest` keeps it in the timeline (one writer, so one
        // entry: a report that is not final is outranked by nothing the other path writes).
        return Ok(None);
    }
    let status = InvocationStatus::from(reply.status);
    let change = StatusChange::new(status, Source::Device, now_ms())
        .with_reason(reply.status_reason.clone())
        .with_result(reply.recorded_result());
    match ports.record_reply(id, &call.device, &change).await {
        Ok(true) => Ok(Some(Answer {
            status,
            result: reply.result,
            status_reason: reply.status_reason,
        })),
        // The record had moved on: the rule path recorded the reply first (or the record is
        // not this device's); whatever the record says is the answer, if it is final.
        Ok(false) => Ok(ports
            .answer(id)
            .await
            .ok()
            .flatten()
            .filter(Answer::is_final)),
        Err(err) => {
            tracing::warn!(request_id = %id, error = %err, "the reply could not be recorded now; left to ingest");
            Ok(None)
        }
    }
}

fn answered(call: &Call, answer: Answer, started: Instant) -> HttpResponse {
    json(
        StatusCode::OK,
        &InvokeResponse {
            request_id: call.id.to_string(),
            device_id: call.device.to_string(),
            method: call.invocation.method.to_string(),
            status: answer.status,
            result: answer.result,
            status_reason: answer.status_reason,
            elapsed_ms: started.elapsed().as_millis() as u64,
        },
    )
}

#[cfg(test)]
mod tests;
