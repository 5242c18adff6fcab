//! The read side of the API:
//! - `GET /invocations/{requestId}`: an invocation with its timeline;
//! - `GET /executions/{executionId}`: a command execution with its timeline;
//! - `GET /devices/{deviceId}`: connectivity;
//! - `GET /devices/{deviceId}/executions`, `GET /commands/{commandId}/executions`: newest
//!   first, `status`, `limit`, `nextToken`.

use std::future::Future;

use lambda_http::http::StatusCode;
use lambda_http::Request;
use serde::Serialize;
use tether_adapters::http::{
    json, query_pairs, respond, route, unrouted, upstream, Function, HttpResponse, Route,
};
use tether_domain::api::{DeviceConnectivity, ExecutionRecord, InvocationRecord, ListQuery, Page};
use tether_domain::error::Resource;
use tether_domain::{ApiError, CommandId, DeviceId, ExecutionId, RequestId};
use tether_store::{ListBy, Store, StoreError};

/// What the queries read.
pub trait Ports: Sync {
    fn invocation(
        &self,
        id: &RequestId,
    ) -> impl Future<Output = Result<Option<InvocationRecord>, StoreError>> + Send;
    fn execution(
        &self,
        id: &ExecutionId,
    ) -> impl Future<Output = Result<Option<ExecutionRecord>, StoreError>> + Send;
    fn connectivity(
        &self,
        device: &DeviceId,
    ) -> impl Future<Output = Result<Option<DeviceConnectivity>, StoreError>> + Send;
    fn list(
        &self,
        by: &ListBy,
        query: &ListQuery,
    ) -> impl Future<Output = Result<Page<ExecutionRecord>, StoreError>> + Send;
}

impl Ports for Store {
    async fn invocation(&self, id: &RequestId) -> Result<Option<InvocationRecord>, StoreError> {
        Store::invocation(self, id).await
    }

    async fn execution(&self, id: &ExecutionId) -> Result<Option<ExecutionRecord>, StoreError> {
        Store::execution(self, id).await
    }

    async fn connectivity(
        &self,
        device: &DeviceId,
    ) -> Result<Option<DeviceConnectivity>, StoreError> {
        Store::connectivity(self, device).await
    }

    async fn list(
        &self,
        by: &ListBy,
        query: &ListQuery,
    ) -> Result<Page<ExecutionRecord>, StoreError> {
        self.list_executions(by, query).await
    }
}

/// The Lambda handler.
#[tracing::instrument(skip_all, fields(path = %request.uri().path()))]
pub async fn handle(ports: &impl Ports, request: Request) -> HttpResponse {
    // Behind the API's default route too: whatever no function serves ends here.
    if route(Function::Status, request.method(), request.uri().path()).is_err() {
        return unrouted(request.method(), request.uri().path());
    }
    respond(query(ports, &request).await)
}

fn found<T: Serialize>(
    value: Option<T>,
    what: Resource,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    match value {
        Some(value) => Ok(json(StatusCode::OK, &value)),
        None => Err(ApiError::NotFound {
            what,
            id: id.to_owned(),
        }),
    }
}

async fn query(ports: &impl Ports, request: &Request) -> Result<HttpResponse, ApiError> {
    let (route, captures) = route(Function::Status, request.method(), request.uri().path())?;
    let id = captures[0];
    let pairs = query_pairs(request);
    let lists = matches!(
        route,
        Route::ListDeviceExecutions | Route::ListCommandExecutions
    );
    if !lists && !pairs.is_empty() {
        return Err(ApiError::Validation(
            "this route takes no query parameters".into(),
        ));
    }
    match route {
        Route::GetInvocation => found(
            ports
                .invocation(&RequestId::parse(id)?)
                .await
                .map_err(upstream)?,
            Resource::Invocation,
            id,
        ),
        Route::GetExecution => found(
            ports
                .execution(&ExecutionId::parse(id)?)
                .await
                .map_err(upstream)?,
            Resource::Execution,
            id,
        ),
        Route::GetDevice => found(
            ports
                .connectivity(&DeviceId::parse(id)?)
                .await
                .map_err(upstream)?,
            Resource::Device,
            id,
        ),
        Route::ListDeviceExecutions | Route::ListCommandExecutions => {
            let by = match route {
                Route::ListDeviceExecutions => ListBy::Device(DeviceId::parse(id)?),
                _ => ListBy::Command(CommandId::parse(id)?),
            };
            let list = ListQuery::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
            Ok(json(
                StatusCode::OK,
                &ports.list(&by, &list).await.map_err(upstream)?,
            ))
        }
        // `route` answers only this function's routes.
        other => Err(ApiError::RouteNotFound(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use lambda_http::Body;
    use serde_json::Value;

    use super::*;

    #[derive(Default)]
    struct Fake {
        listed: Mutex<Vec<(ListBy, ListQuery)>>,
        token_invalid: bool,
    }

    impl Ports for Fake {
        async fn invocation(&self, id: &RequestId) -> Result<Option<InvocationRecord>, StoreError> {
            Ok((id.as_str() == "known").then(|| InvocationRecord {
                request_id: "known".into(),
                device_id: "dev-1".into(),
                method: "m".into(),
                status: tether_domain::InvocationStatus::Succeeded,
                result: None,
                status_reason: None,
                created_at: "2026-11-23T18:00:00.000Z".into(),
                completed_at: None,
                timeline: Some(vec![]),
                timeline_truncated: false,
            }))
        }

        async fn execution(&self, _: &ExecutionId) -> Result<Option<ExecutionRecord>, StoreError> {
            Err(StoreError::Dynamo {
                operation: "Query",
                kind: tether_store::FailureKind::Unavailable,
                source: "down".into(),
            })
        }

        async fn connectivity(
            &self,
            _: &DeviceId,
        ) -> Result<Option<DeviceConnectivity>, StoreError> {
            Ok(None)
        }

        async fn list(
            &self,
            by: &ListBy,
            query: &ListQuery,
        ) -> Result<Page<ExecutionRecord>, StoreError> {
            if self.token_invalid {
                return Err(StoreError::InvalidToken);
            }
            self.listed
                .lock()
                .unwrap()
                .push((by.clone(), query.clone()));
            Ok(Page {
                items: vec![],
                next_token: None,
            })
        }
    }

    fn get(uri: &str) -> Request {
        let request = lambda_http::http::Request::builder()
            .method("GET")
            .uri(uri)
            .body(Body::Empty)
            .unwrap();
        tether_adapters::http::with_uri_query(request)
    }

    async fn call(fake: &Fake, uri: &str) -> (u16, Value) {
        let response = handle(fake, get(uri)).await;
        (
            response.status().as_u16(),
            serde_json::from_slice(response.body().as_ref()).unwrap(),
        )
    }

    #[tokio::test]
    async fn records_are_found_or_a_named_404() {
        let fake = Fake::default();
        assert_eq!(call(&fake, "/invocations/known").await.0, 200);
        let (status, body) = call(&fake, "/invocations/unknown").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("INVOCATION_NOT_FOUND"))
        );
        let (status, body) = call(&fake, "/devices/dev-1").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("DEVICE_NOT_FOUND"))
        );
    }

    #[tokio::test]
    async fn lists_pass_their_query_and_refuse_bad_ones() {
        let fake = Fake::default();
        let (status, _) = call(
            &fake,
            "/devices/car-1/executions?status=FAILED&limit=5&nextToken=abc",
        )
        .await;
        assert_eq!(status, 200);
        let (by, query) = fake.listed.lock().unwrap()[0].clone();
        assert_eq!(by, ListBy::Device(DeviceId::parse("car-1").unwrap()));
        assert_eq!((query.limit, query.next_token.as_deref()), (5, Some("abc")));
        assert_eq!(call(&fake, "/commands/c/executions?limit=0").await.0, 400);
        assert_eq!(call(&fake, "/commands/c/executions?sort=asc").await.0, 400);
        assert_eq!(call(&fake, "/invocations/known?x=1").await.0, 400);
        let bad_token = Fake {
            token_invalid: true,
            ..Fake::default()
        };
        assert_eq!(
            call(&bad_token, "/commands/c/executions?nextToken=zz")
                .await
                .1["code"],
            "INVALID_NEXT_TOKEN"
        );
    }

    #[tokio::test]
    async fn hostile_ids_and_unknown_routes_are_4xx_and_outages_503() {
        let fake = Fake::default();
        assert_eq!(call(&fake, "/invocations/a%2Fb").await.0, 400);
        assert_eq!(call(&fake, "/devices/d+1/executions").await.0, 400);
        assert_eq!(call(&fake, "/nowhere").await.1["code"], "ROUTE_NOT_FOUND");
        let mut delete = get("/devices/dev-1/invoke");
        *delete.method_mut() = lambda_http::http::Method::DELETE;
        let response = handle(&fake, delete).await;
        assert_eq!(response.status(), 405, "a method the path does not take");
        assert_eq!(response.headers()["allow"], "POST");
        let (status, body) = call(&fake, "/executions/e-1").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (503, Some("UPSTREAM_UNAVAILABLE"))
        );
    }
}
