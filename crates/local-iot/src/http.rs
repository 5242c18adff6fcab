//! The AWS REST endpoints, on one HTTP server: the `iot` Commands operations,
//! `iot-jobs-data` StartCommandExecution, and `iot-data` Publish and GetConnection, with the
//! services' request and response shapes, so the real SDKs (Rust, boto3, the AWS CLI) work
//! against it through `AWS_ENDPOINT_URL_*`. Requests may be SigV4-signed; signatures are not
//! checked.
//!
//! `POST /command-executions` is both ListCommandExecutions (iot) and StartCommandExecution
//! (iot-jobs-data). The signing name in the `Authorization` header tells them apart; an
//! unsigned request is a start when it names both `targetArn` and `commandArn` (which a list
//! request may not).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::{json, Value};

use crate::aws::AwsError;
use crate::commands::Commands;
use crate::jobs::Jobs;
use crate::link::{Link, Outgoing};
use crate::presence::Connections;
use crate::rules::Delivery;

/// What the handlers share.
#[derive(Clone)]
pub struct Services {
    pub commands: Commands,
    pub jobs: Jobs,
    pub connections: Connections,
    pub publisher: Link,
    /// Delivery straight to one client (SendDirectMessage).
    pub direct: crate::broker::Direct,
    /// Rule delivery, with its dead letters.
    pub delivery: Delivery,
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = (status, Json(json!({ "message": self.message }))).into_response();
        response
            .headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(self.kind));
        response
    }
}

type Reply = Result<Response, AwsError>;

fn json_body(body: &Bytes) -> Result<Value, AwsError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|_| AwsError::validation("the request body is not valid JSON"))
}

/// Which service a request was signed for (`Credential=AKID/date/region/SERVICE/aws4_request`).
fn signing_service(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?.split(',').next()?;
    credential.split('/').nth(3).map(str::to_owned)
}

pub fn router(services: Services) -> Router {
    Router::new()
        .route("/commands", get(list_commands))
        .route(
            "/commands/{id}",
            put(create_command)
                .get(get_command)
                .patch(update_command)
                .delete(delete_command),
        )
        .route("/command-executions", post(command_executions))
        .route(
            "/command-executions/{id}",
            get(get_execution).delete(delete_execution),
        )
        .route("/jobs", get(list_jobs))
        .route(
            "/jobs/{id}",
            put(create_job).get(describe_job).delete(delete_job),
        )
        .route("/jobs/{id}/cancel", put(cancel_job))
        .route("/jobs/{id}/things", get(job_executions))
        .route("/jobs/{id}/job-document", get(job_document))
        .route("/things/{thing}/jobs", get(thing_jobs))
        .route(
            "/things/{thing}/jobs/{job}",
            get(thing_job).put(start_next).post(update_execution),
        )
        .route("/things/{thing}/jobs/{job}/cancel", put(cancel_execution))
        .route("/topics/{*topic}", post(publish))
        .route("/connections/{client_id}", get(get_connection))
        .route(
            "/connections/{client_id}/messages",
            post(send_direct_message),
        )
        .route(
            "/_local/health",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/_local/dead-letters", get(dead_letters))
        .route("/_local/dead-letters/replay", post(replay_dead_letters))
        .fallback(|| async {
            AwsError::new(
                404,
                "UnknownOperationException",
                "local-iot does not emulate this operation",
            )
        })
        .with_state(services)
}

async fn create_command(State(s): State<Services>, Path(id): Path<String>, body: Bytes) -> Reply {
    Ok(Json(s.commands.create_command(&id, &json_body(&body)?)?).into_response())
}

async fn get_command(State(s): State<Services>, Path(id): Path<String>) -> Reply {
    Ok(Json(s.commands.get_command(&id)?).into_response())
}

async fn list_commands(
    State(s): State<Services>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    Ok(Json(s.commands.list_commands(&query)?).into_response())
}

async fn update_command(State(s): State<Services>, Path(id): Path<String>, body: Bytes) -> Reply {
    Ok(Json(s.commands.update_command(&id, &json_body(&body)?)?).into_response())
}

async fn delete_command(State(s): State<Services>, Path(id): Path<String>) -> Reply {
    let status = s.commands.delete_command(&id)?;
    Ok(StatusCode::from_u16(status)
        .unwrap_or(StatusCode::ACCEPTED)
        .into_response())
}

async fn command_executions(
    State(s): State<Services>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Reply {
    let body = json_body(&body)?;
    let is_start = match signing_service(&headers).as_deref() {
        Some("iot-jobs-data") => true,
        Some(_) => false,
        None => body.get("targetArn").is_some() && body.get("commandArn").is_some(),
    };
    if is_start {
        Ok(Json(s.commands.start_execution(&body).await?).into_response())
    } else {
        Ok(Json(s.commands.list_executions(&query, &body)?).into_response())
    }
}

async fn get_execution(
    State(s): State<Services>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    Ok(Json(s.commands.get_execution(&id, &query)?).into_response())
}

async fn delete_execution(
    State(s): State<Services>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    s.commands.delete_execution(&id, &query)?;
    Ok(StatusCode::OK.into_response())
}

type Q = Query<HashMap<String, String>>;

async fn create_job(State(s): State<Services>, Path(id): Path<String>, body: Bytes) -> Reply {
    Ok(Json(s.jobs.create_job(&id, &json_body(&body)?).await?).into_response())
}

async fn describe_job(State(s): State<Services>, Path(id): Path<String>) -> Reply {
    Ok(Json(s.jobs.describe_job(&id)?).into_response())
}

async fn job_document(State(s): State<Services>, Path(id): Path<String>) -> Reply {
    Ok(Json(s.jobs.job_document(&id)?).into_response())
}

async fn list_jobs(State(s): State<Services>, Query(query): Q) -> Reply {
    Ok(Json(s.jobs.list_jobs(&query)?).into_response())
}

async fn cancel_job(
    State(s): State<Services>,
    Path(id): Path<String>,
    Query(query): Q,
    body: Bytes,
) -> Reply {
    Ok(Json(
        s.jobs
            .cancel_job_request(&id, &query, &json_body(&body)?)
            .await?,
    )
    .into_response())
}

async fn delete_job(State(s): State<Services>, Path(id): Path<String>, Query(query): Q) -> Reply {
    s.jobs.delete_job(&id, &query).await?;
    Ok(StatusCode::OK.into_response())
}

async fn job_executions(
    State(s): State<Services>,
    Path(id): Path<String>,
    Query(query): Q,
) -> Reply {
    Ok(Json(s.jobs.executions_for_job(&id, &query)?).into_response())
}

/// Whether a request under `/things/{thing}/jobs` is for the device API (iot-jobs-data) rather
/// than the control plane (iot), which share paths: by the signing name; unsigned requests
/// are the device's.
fn for_device(headers: &HeaderMap) -> bool {
    signing_service(headers).is_none_or(|s| s == "iot-jobs-data")
}

/// GetPendingJobExecutions (iot-jobs-data) or ListJobExecutionsForThing (iot).
async fn thing_jobs(
    State(s): State<Services>,
    Path(thing): Path<String>,
    headers: HeaderMap,
    Query(query): Q,
) -> Reply {
    if for_device(&headers) {
        Ok(Json(s.jobs.get_pending_https(&thing)?).into_response())
    } else {
        Ok(Json(s.jobs.executions_for_thing(&thing, &query)?).into_response())
    }
}

/// DescribeJobExecution, of iot-jobs-data or of iot.
async fn thing_job(
    State(s): State<Services>,
    Path((thing, job)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Q,
) -> Reply {
    if for_device(&headers) {
        Ok(Json(s.jobs.describe_https(&thing, &job, &query)?).into_response())
    } else {
        Ok(Json(s.jobs.describe_execution(&thing, &job)?).into_response())
    }
}

/// StartNextPendingJobExecution: `PUT /things/{thingName}/jobs/$next`.
async fn start_next(
    State(s): State<Services>,
    Path((thing, job)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    if job != "$next" {
        return Err(AwsError::new(
            404,
            "UnknownOperationException",
            "PUT /things/{thing}/jobs/{job} is only $next",
        ));
    }
    Ok(Json(s.jobs.start_next_https(&thing, &json_body(&body)?).await?).into_response())
}

async fn update_execution(
    State(s): State<Services>,
    Path((thing, job)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    Ok(Json(
        s.jobs
            .update_https(&thing, &job, &json_body(&body)?)
            .await?,
    )
    .into_response())
}

async fn cancel_execution(
    State(s): State<Services>,
    Path((thing, job)): Path<(String, String)>,
    Query(query): Q,
    body: Bytes,
) -> Reply {
    s.jobs
        .cancel_execution(&thing, &job, &query, &json_body(&body)?)
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// iot-data Publish: `POST /topics/{topic}` with the MQTT 5 properties in the query and headers.
async fn publish(
    State(s): State<Services>,
    Path(topic): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    payload: Bytes,
) -> Reply {
    if topic.is_empty() || topic.contains(['+', '#', '\0']) {
        return Err(AwsError::invalid_request(format!(
            "{topic:?} is not a topic name"
        )));
    }
    if payload.len() > 128 * 1024 {
        return Err(AwsError::new(
            413,
            "RequestEntityTooLargeException",
            "the payload exceeds 128 KB",
        ));
    }
    let qos = match query.get("qos").map(String::as_str) {
        None | Some("0") => 0,
        Some("1") => 1,
        Some(other) => {
            return Err(AwsError::invalid_request(format!(
                "qos {other} is not 0 or 1"
            )))
        }
    };
    let retain = query.get("retain").is_some_and(|r| r == "true");
    let properties = publish_properties(&query, &headers)?;
    tracing::debug!(topic = %topic, qos, bytes = payload.len(), "Publish");
    s.publisher
        .publish(Outgoing {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
        .await
        .map_err(|e| AwsError::new(500, "InternalFailureException", e.to_string()))?;
    Ok(StatusCode::OK.into_response())
}

/// The MQTT 5 properties of an iot-data Publish: message expiry, response topic and content
/// type from the query; correlation data, payload format and user properties from headers.
fn publish_properties(
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<PublishProperties, AwsError> {
    let message_expiry_interval = query
        .get("messageExpiry")
        .map(|m| {
            m.parse::<u32>()
                .map_err(|_| AwsError::invalid_request("messageExpiry must be a number of seconds"))
        })
        .transpose()?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let correlation_data = header("x-amz-mqtt5-correlation-data")
        .map(|c| {
            BASE64
                .decode(c)
                .map(bytes::Bytes::from)
                .map_err(|_| AwsError::invalid_request("correlation data must be base64"))
        })
        .transpose()?;
    let payload_format_indicator = match header("x-amz-mqtt5-payload-format-indicator") {
        None => None,
        Some("UNSPECIFIED_BYTES") => Some(0),
        Some("UTF8_DATA") => Some(1),
        Some(other) => {
            return Err(AwsError::invalid_request(format!(
                "payload format indicator {other} is not valid"
            )))
        }
    };
    let user_properties = match header("x-amz-mqtt5-user-properties") {
        None => Vec::new(),
        Some(encoded) => {
            let text = BASE64
                .decode(encoded)
                .map_err(|_| AwsError::invalid_request("user properties must be base64 JSON"))?;
            let list: Vec<HashMap<String, String>> =
                serde_json::from_slice(&text).map_err(|_| {
                    AwsError::invalid_request("user properties must be a JSON array of objects")
                })?;
            list.into_iter().flat_map(|m| m.into_iter()).collect()
        }
    };
    Ok(PublishProperties {
        payload_format_indicator,
        message_expiry_interval,
        response_topic: query.get("responseTopic").cloned(),
        correlation_data,
        user_properties,
        content_type: query.get("contentType").cloned(),
        ..Default::default()
    })
}

/// iot-data SendDirectMessage: `POST /connections/{clientId}/messages?topic=&confirmation=&timeout=`
/// with the MQTT 5 properties in the query and headers, as Publish has them. The message goes
/// to that one client, never through the topic routing (no subscription needed, no rule sees
/// it, nothing is retained or queued). A client that is not connected is a 404 at once; with
/// `confirmation=true` the message goes at QoS 1 and the answer waits for the client's PUBACK,
/// a 504 GatewayTimeoutException after `timeout` seconds (1-15, default 5) without it.
async fn send_direct_message(
    State(s): State<Services>,
    Path(client_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    payload: Bytes,
) -> Reply {
    let topic = query
        .get("topic")
        .filter(|t| !t.is_empty() && !t.contains(['+', '#', '\0']) && !t.starts_with('$'))
        .ok_or_else(|| AwsError::invalid_request("topic is required and must be a topic name"))?
        .clone();
    if client_id.is_empty() || client_id.len() > 128 || client_id.starts_with('$') {
        return Err(AwsError::invalid_request("clientId is not a client id"));
    }
    if payload.len() > 128 * 1024 {
        return Err(AwsError::new(
            413,
            "RequestEntityTooLargeException",
            "the payload exceeds 128 KB",
        ));
    }
    let confirm = match query.get("confirmation").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(AwsError::invalid_request(format!(
                "confirmation {other} is not true or false"
            )))
        }
    };
    let timeout = match query.get("timeout") {
        None => 5,
        Some(t) => t
            .parse::<u64>()
            .ok()
            .filter(|t| (1..=15).contains(t))
            .ok_or_else(|| AwsError::invalid_request("timeout must be 1 to 15 seconds"))?,
    };
    let properties = publish_properties(&query, &headers)?;
    let message = crate::broker::DirectMessage {
        topic,
        payload,
        confirm,
        properties,
    };
    let sent = s.direct.send(&client_id, message).await.ok_or_else(|| {
        AwsError::new(
            404,
            "ResourceNotFoundException",
            format!("client {client_id} is not connected"),
        )
    })?;
    if let crate::broker::DirectSent::AwaitingAck(ack) = sent {
        if !ack.within(std::time::Duration::from_secs(timeout)).await {
            return Err(AwsError::new(
                504,
                "GatewayTimeoutException",
                format!("client {client_id} did not acknowledge the message within {timeout} s"),
            ));
        }
    }
    let trace = tether_domain::RequestId::random();
    Ok(Json(json!({ "message": "OK", "traceId": trace.as_str() })).into_response())
}

/// iot-data GetConnection.
async fn get_connection(State(s): State<Services>, Path(client_id): Path<String>) -> Reply {
    let connection = s.connections.get(&client_id).ok_or_else(|| {
        AwsError::new(
            404,
            "ResourceNotFoundException",
            format!("client {client_id} has never connected"),
        )
    })?;
    let mut out =
        json!({ "connected": connection.connected, "clientId": client_id, "thingName": client_id });
    if let Some(at) = connection.connected_since {
        out["connectedSince"] = json!(at);
    }
    if let Some(at) = connection
        .disconnected_since
        .filter(|_| !connection.connected)
    {
        out["disconnectedSince"] = json!(at);
    }
    if let Some(reason) = connection
        .disconnect_reason
        .filter(|_| !connection.connected)
    {
        out["disconnectReason"] = json!(reason);
    }
    Ok(Json(out).into_response())
}

async fn dead_letters(State(s): State<Services>) -> Json<Value> {
    Json(json!({ "deadLetters": s.delivery.dead_letters.all() }))
}

async fn replay_dead_letters(State(s): State<Services>) -> Json<Value> {
    Json(json!(s.delivery.replay_dead_letters().await))
}
