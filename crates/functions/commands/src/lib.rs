//! `/commands`: reusable AWS IoT Commands and their executions on many devices.
//!
//! - `POST /commands`, `GET /commands`, `GET|PATCH|DELETE /commands/{commandId}`: the command
//!   resource (CreateCommand, ListCommands, GetCommand, UpdateCommand, DeleteCommand).
//! - `POST /commands/{commandId}/executions`: StartCommandExecution for each target (at most
//!   [`PARALLEL_STARTS`] at once), each recorded at once as CREATED so status queries see it
//!   before the first event; per-target results. With `Idempotency-Key`, every target gets a
//!   client token derived from the key, so a retried request starts nothing twice. With
//!   `waitMs`, the call waits until every execution has a final answer (SUCCEEDED, FAILED,
//!   REJECTED, TIMED_OUT) and answers 200, or 504 at the deadline with what is still open.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::Request;
use serde_json::{json, Map, Value};
use tether_adapters::commands::CommandsGateway;
use tether_adapters::http::{
    caller, digest, empty, idempotency_key, internal, json, json_body, problem, query_pairs, route,
    upstream, Function, HttpResponse, Route,
};
use tether_domain::api::{
    CommandDocument, CommandResource, CreateCommandRequest, ExecutionRecord, Page,
    StartExecutionsRequest, StartExecutionsResponse, StartedExecution, UpdateCommandRequest,
    DEFAULT_LIST_LIMIT, LIST_LIMIT,
};
use tether_domain::clock::now_ms;
use tether_domain::error::Resource;
use tether_domain::{ApiError, CommandId, DeviceId, ExecutionId, ExecutionStatus, Source};
use tether_store::{RecordKey, RecordMeta, StatusChange, Store};

/// StartCommandExecution calls in flight at once for one request.
pub const PARALLEL_STARTS: usize = 10;
/// How long after the request arrived a target may still be started: the function's timeout
/// is 29 s and API Gateway's 30 s, and a start in flight may take a few seconds more. Targets
/// whose turn comes later are answered `NOT_STARTED`, so the caller keeps every execution id
/// (a cut-off function would lose them all).
pub const START_BUDGET: Duration = Duration::from_secs(18);
/// Time kept back from the function's own deadline when it is known (the Lambda context).
const DEADLINE_MARGIN: Duration = Duration::from_secs(8);
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handler needs from the world.
pub trait Ports: Sync {
    /// CreateCommand with the payload the request's validation produced.
    fn create(
        &self,
        id: &str,
        request: &CreateCommandRequest,
        document: CommandDocument,
    ) -> impl Future<Output = Result<Value, ApiError>> + Send;
    fn get(&self, id: &str) -> impl Future<Output = Result<CommandResource, ApiError>> + Send;
    fn list(
        &self,
        limit: u32,
        token: Option<String>,
    ) -> impl Future<Output = Result<Page<CommandResource>, ApiError>> + Send;
    fn update(
        &self,
        id: &str,
        request: &UpdateCommandRequest,
    ) -> impl Future<Output = Result<Value, ApiError>> + Send;
    fn delete(&self, id: &str) -> impl Future<Output = Result<u16, ApiError>> + Send;
    fn start(
        &self,
        command_arn: &str,
        target_arn: &str,
        parameters: Option<&Map<String, Value>>,
        timeout_s: Option<u64>,
        client_token: Option<String>,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;
    fn record_created(
        &self,
        execution: &ExecutionId,
        meta: &RecordMeta,
        at_ms: i64,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
    fn execution(
        &self,
        id: &ExecutionId,
    ) -> impl Future<Output = Result<Option<ExecutionRecord>, ApiError>> + Send;
    /// The records alone (no timelines), in the order of `ids`: what a wait round reads.
    fn execution_records(
        &self,
        ids: &[ExecutionId],
    ) -> impl Future<Output = Result<Vec<Option<ExecutionRecord>>, ApiError>> + Send;
}

/// The real ports.
pub struct Deps {
    pub store: Store,
    pub gateway: CommandsGateway,
}

impl Ports for Deps {
    async fn create(
        &self,
        id: &str,
        request: &CreateCommandRequest,
        document: CommandDocument,
    ) -> Result<Value, ApiError> {
        self.gateway.create(id, request, document).await
    }

    async fn get(&self, id: &str) -> Result<CommandResource, ApiError> {
        self.gateway.get(id).await
    }

    async fn list(
        &self,
        limit: u32,
        token: Option<String>,
    ) -> Result<Page<CommandResource>, ApiError> {
        self.gateway.list(limit, token).await
    }

    async fn update(&self, id: &str, request: &UpdateCommandRequest) -> Result<Value, ApiError> {
        self.gateway.update(id, request).await
    }

    async fn delete(&self, id: &str) -> Result<u16, ApiError> {
        self.gateway.delete(id).await
    }

    async fn start(
        &self,
        command_arn: &str,
        target_arn: &str,
        parameters: Option<&Map<String, Value>>,
        timeout_s: Option<u64>,
        client_token: Option<String>,
    ) -> Result<String, ApiError> {
        self.gateway
            .start(command_arn, target_arn, parameters, timeout_s, client_token)
            .await
    }

    async fn record_created(
        &self,
        execution: &ExecutionId,
        meta: &RecordMeta,
        at_ms: i64,
    ) -> Result<(), ApiError> {
        let change = StatusChange::new(ExecutionStatus::Created, Source::Cloud, at_ms);
        self.store
            .apply(
                &RecordKey::Execution(execution.clone()),
                &change,
                Some(meta),
            )
            .await
            .map_err(upstream)?;
        Ok(())
    }

    async fn execution(&self, id: &ExecutionId) -> Result<Option<ExecutionRecord>, ApiError> {
        self.store.execution(id).await.map_err(upstream)
    }

    async fn execution_records(
        &self,
        ids: &[ExecutionId],
    ) -> Result<Vec<Option<ExecutionRecord>>, ApiError> {
        self.store.execution_records(ids).await.map_err(upstream)
    }
}

/// The Lambda handler.
#[tracing::instrument(skip_all, fields(method = %request.method(), path = %request.uri().path()))]
pub async fn handle(ports: &impl Ports, request: Request) -> HttpResponse {
    match dispatch(ports, &request).await {
        Ok(response) => response,
        Err(err) => problem(&err),
    }
}

async fn dispatch(ports: &impl Ports, request: &Request) -> Result<HttpResponse, ApiError> {
    let (route, captures) = route(Function::Commands, request.method(), request.uri().path())?;
    let pairs = query_pairs(request);
    if route != Route::ListCommands && !pairs.is_empty() {
        return Err(ApiError::Validation(
            "this route takes no query parameters".into(),
        ));
    }
    let id = || CommandId::parse(captures[0]);
    match route {
        Route::CreateCommand => create(ports, request).await,
        Route::ListCommands => list(ports, &pairs).await,
        Route::GetCommand => Ok(json(StatusCode::OK, &ports.get(id()?.as_str()).await?)),
        Route::UpdateCommand => {
            let id = id()?;
            let body: UpdateCommandRequest = json_body(request, MAX_BODY_BYTES)?;
            body.validate()?;
            Ok(json(
                StatusCode::OK,
                &ports.update(id.as_str(), &body).await?,
            ))
        }
        Route::DeleteCommand => {
            let id = id()?;
            match ports.delete(id.as_str()).await? {
                204 => Ok(empty(StatusCode::NO_CONTENT)),
                _ => Ok(json(
                    StatusCode::ACCEPTED,
                    &json!({ "commandId": id, "status": "PENDING_DELETION" }),
                )),
            }
        }
        Route::StartExecutions => {
            let now = Instant::now();
            start(ports, request, &id()?, now, start_budget(request, now)).await
        }
        // `route` answers only this function's routes.
        other => Err(ApiError::RouteNotFound(format!("{:?}", other))),
    }
}

async fn create(ports: &impl Ports, request: &Request) -> Result<HttpResponse, ApiError> {
    let body: CreateCommandRequest = json_body(request, MAX_BODY_BYTES)?;
    let id = match &body.command_id {
        Some(id) => CommandId::parse(id.as_str())?,
        None => CommandId::parse(ExecutionId::random().into_string())?,
    };
    let document = body.validate()?;
    let created = ports.create(id.as_str(), &body, document).await?;
    let mut response = json(StatusCode::CREATED, &created);
    if let Ok(location) = HeaderValue::from_str(&format!("/commands/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn list(ports: &impl Ports, pairs: &[(String, String)]) -> Result<HttpResponse, ApiError> {
    let mut limit = DEFAULT_LIST_LIMIT;
    let mut token = None;
    for (key, value) in pairs {
        match key.as_str() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|l| LIST_LIMIT.contains(l))
                    .ok_or_else(|| {
                        ApiError::Validation(format!(
                            "limit must be between {} and {}",
                            LIST_LIMIT.start(),
                            LIST_LIMIT.end()
                        ))
                    })?
            }
            "nextToken" => token = Some(value.clone()),
            other => {
                return Err(ApiError::Validation(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        }
    }
    Ok(json(StatusCode::OK, &ports.list(limit, token).await?))
}

/// A client token for one target of a keyed request: the same caller, key, command and target
/// always give the same token (64 printable characters at most).
fn client_token(caller: &str, key: &str, command: &CommandId, target: &DeviceId) -> String {
    let mut token = digest(&[caller, key, command.as_str(), target.as_str()]);
    token.truncate(48);
    token
}

/// Whether an execution has its final answer for a waiting caller: the device's final report,
/// or the cloud-side timeout.
fn settled(record: &ExecutionRecord) -> bool {
    !matches!(
        record.status,
        ExecutionStatus::Created | ExecutionStatus::InProgress
    )
}

/// Until when targets may be started: [`START_BUDGET`] after `now`, and, when the Lambda
/// context gives the function's deadline, no later than [`DEADLINE_MARGIN`] (at most a third of
/// the time left, for a function with a short timeout) before it.
fn start_budget(request: &Request, now: Instant) -> Instant {
    use lambda_http::RequestExt;
    let budget = now + START_BUDGET;
    let Some(deadline_ms) = request
        .lambda_context_ref()
        .map(|context| context.deadline)
        .and_then(|d| i64::try_from(d).ok())
        .filter(|d| *d > 0)
    else {
        return budget;
    };
    let left = Duration::from_millis(u64::try_from(deadline_ms - now_ms()).unwrap_or(0));
    if left.is_zero() {
        // Lambda never runs a request past its deadline: such a context's deadline is not one
        // (`cargo lambda watch` sends them).
        return budget;
    }
    budget.min(now + left.saturating_sub(DEADLINE_MARGIN.min(left / 3)))
}

async fn start(
    ports: &impl Ports,
    request: &Request,
    command: &CommandId,
    started: Instant,
    start_until: Instant,
) -> Result<HttpResponse, ApiError> {
    let body = json_body::<StartExecutionsRequest>(request, MAX_BODY_BYTES)?.validate()?;
    let key = idempotency_key(request)?;
    let caller = caller(request);
    let resource = ports.get(command.as_str()).await?;
    if resource.pending_deletion {
        return Err(ApiError::NotFound {
            what: Resource::Command,
            id: command.to_string(),
        });
    }
    if resource.deprecated {
        return Err(ApiError::CommandDeprecated(command.to_string()));
    }
    let command_arn = resource.command_arn.ok_or(ApiError::Internal)?;
    let arn_prefix = command_arn
        .split_once(":command/")
        .map(|(prefix, _)| prefix.to_owned())
        .ok_or(ApiError::Internal)?;
    let parameters = body.parameters.clone().map(Value::Object);
    tracing::info!(command = %command, targets = body.targets.len(), wait_ms = ?body.wait_ms, "start executions");

    let outcomes: Vec<StartedExecution> = stream::iter(body.targets.clone())
        .map(|target: DeviceId| {
            let target_arn = format!("{arn_prefix}:{}/{target}", body.target_type.arn_type());
            let token = key.map(|k| client_token(&caller, k, command, &target));
            let meta = RecordMeta::Execution {
                command: command.clone(),
                target: target.clone(),
                target_kind: body.target_type,
                parameters: parameters.clone(),
            };
            let (command_arn, parameters) = (&command_arn, body.parameters.as_ref());
            async move {
                if Instant::now() >= start_until {
                    return not_started(&target, ApiError::NotStarted);
                }
                let started = ports.start(command_arn, &target_arn, parameters, body.timeout_seconds, token).await;
                match started.and_then(|id| ExecutionId::parse(id).map_err(ApiError::from)) {
                    Ok(id) => {
                        let retried = key.is_some() && matches!(ports.execution(&id).await, Ok(Some(_)));
                        if !retried {
                            if let Err(err) = ports.record_created(&id, &meta, now_ms()).await {
                                // The execution runs; its events will create the record.
                                tracing::warn!(execution = %id, error = %err, "could not record CREATED");
                            }
                        }
                        executed(&target, &id)
                    }
                    Err(err) => not_started(&target, err),
                }
            }
        })
        .buffered(PARALLEL_STARTS)
        .collect()
        .await;

    let Some(wait_ms) = body.wait_ms else {
        return Ok(json(
            StatusCode::ACCEPTED,
            &StartExecutionsResponse {
                executions: outcomes,
            },
        ));
    };
    wait(
        ports,
        outcomes,
        started + Duration::from_millis(wait_ms),
        wait_ms,
    )
    .await
}

fn not_started(target: &DeviceId, err: ApiError) -> StartedExecution {
    StartedExecution {
        target: target.to_string(),
        execution_id: None,
        status: None,
        status_reason: None,
        result: None,
        error: Some(err.to_problem()),
    }
}

fn executed(target: &DeviceId, id: &ExecutionId) -> StartedExecution {
    StartedExecution {
        target: target.to_string(),
        execution_id: Some(id.to_string()),
        status: Some(ExecutionStatus::Created),
        status_reason: None,
        result: None,
        error: None,
    }
}

/// Polls the records until every started execution is settled or the deadline passes.
async fn wait(
    ports: &impl Ports,
    mut outcomes: Vec<StartedExecution>,
    deadline: Instant,
    wait_ms: u64,
) -> Result<HttpResponse, ApiError> {
    let mut interval = Duration::from_millis(20);
    // Parsed once; None for a target whose start failed.
    let ids: Vec<Option<ExecutionId>> = outcomes
        .iter()
        .map(|o| {
            o.execution_id
                .as_deref()
                .filter(|_| o.error.is_none())
                .and_then(|id| ExecutionId::parse(id).ok())
        })
        .collect();
    let started: Vec<ExecutionId> = ids.iter().flatten().cloned().collect();
    loop {
        // One round: one batch read of the records alone, never their timelines.
        let mut records = ports.execution_records(&started).await?.into_iter();
        let mut open = 0;
        for (outcome, id) in outcomes.iter_mut().zip(&ids) {
            if id.is_none() {
                continue;
            }
            match records.next().flatten() {
                Some(record) => {
                    if !settled(&record) {
                        open += 1;
                    }
                    outcome.status = Some(record.status);
                    outcome.status_reason = record.status_reason;
                    outcome.result = record.result;
                }
                None => open += 1,
            }
        }
        if open == 0 {
            return Ok(json(
                StatusCode::OK,
                &StartExecutionsResponse {
                    executions: outcomes,
                },
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let err = ApiError::ExecutionsPending {
                open,
                total: outcomes.len(),
                wait_ms,
            };
            let mut body = serde_json::to_value(err.to_problem()).map_err(|e| internal(&e))?;
            // The problem document carries what was started, settled or not.
            body["executions"] = serde_json::to_value(&outcomes).map_err(|e| internal(&e))?;
            let mut response = json(StatusCode::GATEWAY_TIMEOUT, &body);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            return Ok(response);
        }
        tokio::time::sleep(interval.min(left)).await;
        interval = (interval * 3 / 2).min(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests;
