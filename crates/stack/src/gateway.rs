//! The local stand-in for API Gateway: the API port of the stack, forwarding every request to
//! `cargo lambda watch` with at most [`IN_FLIGHT`] of them at the functions at once.
//!
//! Why: `cargo lambda watch` (1.9) keeps each function's waiting requests in a channel of 100;
//! a request that finds it full waits while holding the lock that the function instances need
//! to take their next request, so every instance and every later request hangs for good. A
//! load of a few hundred concurrent calls did exactly that. Deployed, Lambda starts an instance
//! per concurrent request instead; here the excess waits in this gateway, never in the watcher.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::sigv4::Verifier;

/// Requests forwarded at once: below the watcher's per-function queue of 100, whatever the
/// number of instances, so no function's queue can fill.
pub const IN_FLIGHT: usize = 96;

/// API Gateway's payload limit.
const MAX_BODY: usize = 10 * 1024 * 1024;

/// The running gateway. [`Gateway::shutdown`] (or dropping it) stops it. Until
/// [`Gateway::open`], every request is answered 503 problem+json with `Retry-After`: the
/// functions are still being built or started.
pub struct Gateway {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    auth: Arc<OnceLock<Verifier>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

#[derive(Clone)]
struct Upstream {
    open: Arc<AtomicBool>,
    /// When set, every request must carry a SigV4 signature this verifies (API Gateway's
    /// `AWS_IAM` authorization); else 403 as API Gateway answers it.
    auth: Arc<OnceLock<Verifier>>,
    url: String,
    http: reqwest::Client,
    permits: Arc<Semaphore>,
}

impl Gateway {
    /// Listens on `127.0.0.1:{port}` (0: a free port) and forwards to `upstream`
    /// (`http://127.0.0.1:{watch port}`).
    pub async fn start(port: u16, upstream: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .map_err(|e| anyhow::anyhow!("binding the API port {port}: {e}"))?;
        let addr = listener.local_addr()?;
        let open = Arc::new(AtomicBool::new(false));
        let auth = Arc::new(OnceLock::new());
        let state = Upstream {
            open: open.clone(),
            auth: auth.clone(),
            url: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().no_proxy().build()?,
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
        };
        let app = Router::new()
            .fallback(forward)
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(err) = server.await {
                tracing::error!(error = %err, "the local API gateway stopped");
            }
        });
        Ok(Self {
            addr,
            open,
            auth,
            stop: Some(stop),
            task,
        })
    }

    /// From now on requests go to the functions.
    pub fn open(&self) {
        self.open.store(true, Ordering::Release);
    }

    /// From now on every request must be signed with SigV4 for `verifier`'s identity, as
    /// API Gateway's IAM authorization requires (`make run AUTH=sigv4`).
    pub fn require_sigv4(&self, verifier: Verifier) {
        let _ = self.auth.set(verifier);
    }

    /// `http://127.0.0.1:{port}`: the API.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests and ends the server.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The answer while the stack starts: what a deployed API says of a dependency that is not
/// there yet (the domain's own problem document).
fn starting() -> Response {
    let err = tether_domain::ApiError::UpstreamUnavailable { retry_after_s: 5 };
    let problem = serde_json::to_string(&err.to_problem()).unwrap_or_default();
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, problem).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::RETRY_AFTER, header::HeaderValue::from(5));
    response
}

/// API Gateway's 403 for a request its IAM authorization refuses: `{"message": …}` and the
/// error type in `x-amzn-ErrorType` (not a problem document: the functions never see it).
fn refused(refusal: &crate::sigv4::Refusal) -> Response {
    let (kind, message) = refusal.error();
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = (StatusCode::FORBIDDEN, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert("x-amzn-errortype", header::HeaderValue::from_static(kind));
    response
}

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::HOST
        || name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::TE
        || name == header::TRAILER
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str().starts_with("proxy-")
}

async fn forward(
    State(upstream): State<Upstream>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !upstream.open.load(Ordering::Acquire) {
        return starting();
    }
    if let Some(verifier) = upstream.auth.get() {
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        if let Err(refusal) =
            verifier.verify(method.as_str(), target, &headers, &body, SystemTime::now())
        {
            return refused(&refusal);
        }
    }
    let Ok(_permit) = upstream.permits.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = upstream
        .http
        .request(method, format!("{}{path}", upstream.url))
        .body(body);
    for (name, value) in &headers {
        if !hop_by_hop(name) {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(err) => {
            tracing::warn!(error = %err, "the functions did not answer");
            return (StatusCode::BAD_GATEWAY, "the functions did not answer").into_response();
        }
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let body = match answer.bytes().await {
        Ok(body) => body,
        Err(err) => {
            tracing::warn!(error = %err, "the functions' answer broke off");
            return (StatusCode::BAD_GATEWAY, "the functions' answer broke off").into_response();
        }
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !hop_by_hop(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[tokio::test]
    async fn while_the_stack_starts_every_request_is_a_503_problem_with_retry_after() {
        // Port 9 on loopback: nothing listens there, like functions still being built.
        let gateway = Gateway::start(0, "http://127.0.0.1:9").await.unwrap();
        let http = reqwest::Client::new();

        let starting = http
            .post(format!("{}/devices/dev-1/invoke", gateway.url()))
            .body("{}")
            .send()
            .await
            .unwrap();
        gateway.open();
        let opened = http
            .get(format!("{}/invocations/x", gateway.url()))
            .send()
            .await
            .unwrap();

        assert_eq!(starting.status(), 503);
        assert_eq!(starting.headers()["retry-after"], "5");
        assert_eq!(
            starting.headers()["content-type"],
            "application/problem+json"
        );
        let problem: serde_json::Value = starting.json().await.unwrap();
        assert_eq!(problem["code"], "UPSTREAM_UNAVAILABLE");
        assert_eq!(
            opened.status(),
            502,
            "once open, requests go to the functions"
        );
        gateway.shutdown().await;
    }
}
