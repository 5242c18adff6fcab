//! `/jobs`: AWS IoT Jobs, persistent fleet work that waits in the cloud until each device asks
//! for it (devices that are offline get it when they connect), beside direct invocation
//! (device online now) and Commands (device online for the execution's timeout).
//!
//! - `POST /jobs`: CreateJob over 1–100 devices with a JSON document, optional rollout rate,
//!   abort thresholds, in-progress timeout and retries → 201 `{jobId, jobArn}` and `Location`.
//!   The job id is the caller's `jobId`, else one derived from `Idempotency-Key` (and the
//!   caller), else a random one. Creating a job whose id exists answers the same 201 when the
//!   existing job has the same targets, document and description (a retry), else 409.
//! - `GET /jobs`, `GET /jobs/{jobId}` (status, targets, counts per execution status),
//!   `DELETE /jobs/{jobId}` (`?force=true` for a job in progress) → 202,
//!   `POST /jobs/{jobId}/cancel` `{comment?, force?}` → 202 with the job.
//! - `GET /jobs/{jobId}/executions` (`status`, `limit`, `nextToken`): each device's execution
//!   with the history `ingest` recorded from AWS IoT's job-execution events (timeline and the
//!   device's last `statusDetails`); `GET /devices/{deviceId}/jobs`: a device's executions,
//!   newest first.
//!
//! The current status comes from AWS IoT, which holds it (AWS IoT announces no QUEUED or
//! IN_PROGRESS event, so a store fed by events alone could not know it); DynamoDB adds the
//! history. Jobs live in AWS IoT as `{JOB_ID_PREFIX}{jobId}`: the role reaches no other job.
//!
//! A separate function from `commands`, because its role differs: `iot:CreateJob`,
//! `iot:CancelJob`, `iot:DeleteJob` on `job/{prefix}*` and things, none of the Commands actions.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request};

use tether_adapters::http::{
    caller, digest, empty, idempotency_key, json, json_body, problem, query_pairs, route, Function,
    HttpResponse, Route,
};
use tether_adapters::jobs::{Created, JobsGateway};
use tether_domain::api::{
    CancelJobRequest, CreateJobRequest, CreatedJob, JobExecutionView, NewJob, Page,
    DEFAULT_LIST_LIMIT, LIST_LIMIT, MAX_JOB_DOCUMENT_BYTES,
};
use tether_domain::jobs::JobExecutionStatus;
use tether_domain::{ApiError, DeviceId, JobId};
use tether_store::Store;

/// Largest `POST /jobs` body: the document (32 KB) and 100 targets, with room for the rest.
const MAX_BODY_BYTES: usize = MAX_JOB_DOCUMENT_BYTES + 32 * 1024;
/// As the other routes: a comment over its limit is a 400 that names it, not a 413.
const MAX_CANCEL_BODY_BYTES: usize = 64 * 1024;

/// What the handler works with.
pub struct Deps {
    pub store: Store,
    pub gateway: JobsGateway,
}

pub async fn handle(deps: &Deps, request: Request) -> HttpResponse {
    match dispatch(deps, &request).await {
        Ok(response) => response,
        Err(err) => problem(&err),
    }
}

fn job_id(text: &str) -> Result<JobId, ApiError> {
    JobId::parse(text).map_err(|e| ApiError::Validation(e.to_string()))
}

/// `limit`, `nextToken` and, where `statuses` allows it, `status`.
struct Query {
    status: Option<JobExecutionStatus>,
    limit: u32,
    next_token: Option<String>,
}

fn read_query(pairs: &[(String, String)], with_status: bool) -> Result<Query, ApiError> {
    let mut query = Query {
        status: None,
        limit: DEFAULT_LIST_LIMIT,
        next_token: None,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "status" if with_status => {
                query.status = Some(JobExecutionStatus::parse(value).ok_or_else(|| {
                    ApiError::Validation(format!("status {value:?} is not a job execution status"))
                })?)
            }
            "limit" => {
                query.limit = value
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
            "nextToken" if !value.is_empty() && value.len() <= 4096 => {
                query.next_token = Some(value.clone())
            }
            "nextToken" => return Err(ApiError::Validation("nextToken is not valid".into())),
            other => {
                return Err(ApiError::Validation(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        }
    }
    Ok(query)
}

/// `?force=true|false` of DELETE; nothing else.
fn force(pairs: &[(String, String)]) -> Result<bool, ApiError> {
    let mut force = false;
    for (key, value) in pairs {
        match (key.as_str(), value.as_str()) {
            ("force", "true") => force = true,
            ("force", "false") => force = false,
            ("force", _) => return Err(ApiError::Validation("force must be true or false".into())),
            (other, _) => {
                return Err(ApiError::Validation(format!(
                    "unknown query parameter {other:?}"
                )))
            }
        }
    }
    Ok(force)
}

fn no_query(pairs: &[(String, String)]) -> Result<(), ApiError> {
    if pairs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(
            "this route takes no query parameters".into(),
        ))
    }
}

async fn dispatch(deps: &Deps, request: &Request) -> Result<HttpResponse, ApiError> {
    let (route, captures) = route(Function::Jobs, request.method(), request.uri().path())?;
    let pairs = query_pairs(request);
    match route {
        Route::CreateJob => {
            no_query(&pairs)?;
            create(deps, request).await
        }
        Route::ListJobs => {
            let query = read_query(&pairs, false)?;
            Ok(json(
                StatusCode::OK,
                &deps.gateway.list(query.limit, query.next_token).await?,
            ))
        }
        Route::GetJob => {
            no_query(&pairs)?;
            let id = job_id(captures[0])?;
            Ok(json(
                StatusCode::OK,
                &deps.gateway.describe(&id).await?.view,
            ))
        }
        Route::DeleteJob => {
            let id = job_id(captures[0])?;
            let force = force(&pairs)?;
            deps.gateway.delete(&id, force).await?;
            tracing::info!(job = %id, force, "job deleted");
            Ok(empty(StatusCode::ACCEPTED))
        }
        Route::CancelJob => {
            no_query(&pairs)?;
            let id = job_id(captures[0])?;
            let body: CancelJobRequest = if matches!(request.body(), Body::Empty) {
                CancelJobRequest::default()
            } else {
                json_body(request, MAX_CANCEL_BODY_BYTES)?
            };
            let body = body.validate()?;
            deps.gateway
                .cancel(&id, body.comment.as_deref(), body.force)
                .await?;
            tracing::info!(job = %id, force = body.force, "job cancelled");
            Ok(json(
                StatusCode::ACCEPTED,
                &deps.gateway.describe(&id).await?.view,
            ))
        }
        Route::ListJobExecutions => {
            let id = job_id(captures[0])?;
            let query = read_query(&pairs, true)?;
            executions(deps, &id, query).await
        }
        Route::ListDeviceJobs => {
            let device =
                DeviceId::parse(captures[0]).map_err(|e| ApiError::Validation(e.to_string()))?;
            let query = read_query(&pairs, true)?;
            let mut page = deps
                .gateway
                .device_executions(&device, query.status, query.limit, query.next_token)
                .await?;
            page.items
                .sort_by(|a, b| b.queued_at.cmp(&a.queued_at).then(b.job_id.cmp(&a.job_id)));
            Ok(json(StatusCode::OK, &page))
        }
        // `route` answers only this function's routes.
        other => Err(ApiError::RouteNotFound(format!("{other:?}"))),
    }
}

/// The job id a creation uses: the caller's, or one derived from the `Idempotency-Key` (so a
/// retry names the same job), or a random one.
fn creation_id(request: &Request, job: &NewJob) -> Result<JobId, ApiError> {
    // The header is checked even when the body names the job: a bad header is a 400 always.
    let key = idempotency_key(request)?;
    if let Some(id) = &job.job_id {
        return Ok(id.clone());
    }
    match key {
        Some(key) => {
            let hash = digest(&["job", &caller(request), key]);
            job_id(&hash[..32])
        }
        None => Ok(JobId::random()),
    }
}

async fn create(deps: &Deps, request: &Request) -> Result<HttpResponse, ApiError> {
    let body: CreateJobRequest = json_body(request, MAX_BODY_BYTES)?;
    let job = body.validate()?;
    let id = creation_id(request, &job)?;
    let arn = match deps.gateway.create(&id, &job).await? {
        Created::New(arn) => {
            tracing::info!(job = %id, targets = job.targets.len(), "job created");
            arn
        }
        Created::Exists => {
            // A retry answers as the first call did; anything else is a conflict.
            let existing = deps.gateway.describe(&id).await?;
            let document = deps.gateway.document(&id).await?;
            let mut wanted: Vec<String> = job.targets.iter().map(|d| d.to_string()).collect();
            let mut found = existing.view.targets.clone().unwrap_or_default();
            wanted.sort();
            found.sort();
            if wanted != found
                || document != job.document
                || existing.view.description != job.description
            {
                return Err(ApiError::Conflict(format!(
                    "job {id} exists with other targets, document or description"
                )));
            }
            existing.arn
        }
    };
    let mut response = json(
        StatusCode::CREATED,
        &CreatedJob {
            job_id: id.to_string(),
            job_arn: arn,
        },
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/jobs/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// A page of a job's executions, each with what the store recorded of it.
async fn executions(deps: &Deps, id: &JobId, query: Query) -> Result<HttpResponse, ApiError> {
    let page = deps
        .gateway
        .executions(id, query.status, query.limit, query.next_token)
        .await?;
    let history = deps.store.job_history(id).await.map_err(|e| e.to_api())?;
    let items: Vec<JobExecutionView> = page
        .items
        .into_iter()
        .map(|mut item| {
            if let Ok(device) = DeviceId::parse(item.device_id.as_str()) {
                item.timeline = Some(history.devices.get(&device).cloned().unwrap_or_default());
                item.status_details = history.details.get(&device).cloned();
            }
            item
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &Page {
            items,
            next_token: page.next_token,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn list_queries_are_read_and_refused() {
        let q = read_query(&pairs(&[("status", "QUEUED"), ("limit", "5")]), true).unwrap();
        assert_eq!((q.status, q.limit), (Some(JobExecutionStatus::Queued), 5));
        assert!(read_query(&pairs(&[("status", "QUEUED")]), false).is_err());
        assert!(read_query(&pairs(&[("status", "DONE")]), true).is_err());
        assert!(read_query(&pairs(&[("limit", "0")]), true).is_err());
        assert!(read_query(&pairs(&[("nextToken", "")]), true).is_err());
        assert!(read_query(&pairs(&[("sort", "asc")]), true).is_err());
    }

    #[test]
    fn force_is_true_or_false_and_alone() {
        assert!(force(&pairs(&[("force", "true")])).unwrap());
        assert!(!force(&pairs(&[])).unwrap());
        assert!(force(&pairs(&[("force", "yes")])).is_err());
        assert!(force(&pairs(&[("other", "1")])).is_err());
    }

    #[test]
    fn an_idempotency_key_names_the_same_job_each_time() {
        let job: NewJob = serde_json::from_value::<CreateJobRequest>(
            serde_json::json!({"targets": ["d"], "document": {}}),
        )
        .unwrap()
        .validate()
        .unwrap();
        let request = || {
            lambda_http::http::Request::builder()
                .header("idempotency-key", "k-1")
                .body(Body::Empty)
                .unwrap()
        };
        let first = creation_id(&request(), &job).unwrap();
        assert_eq!(first, creation_id(&request(), &job).unwrap());
        assert_eq!(first.as_str().len(), 32);
        let plain = lambda_http::http::Request::builder()
            .body(Body::Empty)
            .unwrap();
        assert_ne!(creation_id(&plain, &job).unwrap(), first);
    }

    #[test]
    fn bodies_of_values_are_not_accepted_as_cancellations() {
        assert!(serde_json::from_value::<CancelJobRequest>(serde_json::Value::Bool(true)).is_err());
    }
}
