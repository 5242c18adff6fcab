//! The local DynamoDB endpoint: [dynoxide](https://crates.io/crates/dynoxide-rs) (DynamoDB's
//! JSON API on SQLite, in memory) served in this process on 127.0.0.1, behind a thin front that
//! injects faults for the reliability tests.
//!
//! The endpoint runs on a runtime and thread of its own, so it outlives the test or task that
//! started it and is shared safely by tests with runtimes of their own; dropping the last
//! [`LocalDynamo`] stops it and frees the port. Nothing is left behind: there is no process to
//! kill.
//!
//! Faults: `POST {endpoint}/_tether/faults` with `{"operations": [...], "status": 503, "code":
//! "ServiceUnavailable"}` makes those operations (all, when the list is empty) answer that
//! DynamoDB error; `{"refuse": true}` instead closes every connection without an answer, as an
//! endpoint that cannot be reached; `DELETE` clears it; `GET` says what is set and how many
//! requests failed. [`set_fault`] is the client side.
//!
//! Where dynoxide differs from DynamoDB in ways the store meets (README, "The local DynamoDB
//! endpoint"): expired items are deleted by a sweep every minute (DynamoDB: within days), and
//! error messages are worded its own way (the codes are DynamoDB's).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Value};
use tether_store::{StoreError, TableSchema};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Why the endpoint could not be started or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DynamoError {
    #[error("cannot start the local DynamoDB endpoint: {0}")]
    Start(String),
    #[error("cannot read {path}")]
    Template {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating the table")]
    Table(#[from] StoreError),
}

/// A running local DynamoDB endpoint; dropping it stops it.
#[derive(Debug)]
pub struct LocalDynamo {
    endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LocalDynamo {
    /// Serves an empty in-memory database on `127.0.0.1:{port}` (0: a free port).
    pub fn start(port: u16) -> Result<Self, DynamoError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("local-dynamodb".into())
            .spawn(move || serve(port, ready_tx, stop_rx))
            .map_err(|e| DynamoError::Start(e.to_string()))?;
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| DynamoError::Start("it did not start within 30 s".into()))?
            .map_err(DynamoError::Start)?;
        Ok(Self {
            endpoint: format!("http://{addr}"),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The endpoint in `AWS_ENDPOINT_URL_DYNAMODB` when that is set (DynamoDB Local, another
    /// emulator, or DynamoDB itself: the stack and the tests then use it and start nothing),
    /// else [`LocalDynamo::start`] on `port`. Fault injection needs the embedded endpoint.
    pub fn from_env_or_start(port: u16) -> Result<Self, DynamoError> {
        match std::env::var("AWS_ENDPOINT_URL_DYNAMODB") {
            Ok(endpoint) if !endpoint.is_empty() => {
                tracing::info!(%endpoint, "using the DynamoDB endpoint of AWS_ENDPOINT_URL_DYNAMODB");
                Ok(Self {
                    endpoint: endpoint.trim_end_matches('/').to_owned(),
                    stop: None,
                    thread: None,
                })
            }
            _ => Self::start(port),
        }
    }

    /// Whether the embedded endpoint still serves (an external one is taken to).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| !t.is_finished())
    }

    /// `http://127.0.0.1:{port}`: the value for `AWS_ENDPOINT_URL_DYNAMODB`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A client for this endpoint with dummy credentials.
    pub async fn client(&self) -> aws_sdk_dynamodb::Client {
        client(&self.endpoint).await
    }

    /// Creates `table` with the definition in `root/template.yaml`, after checking that the
    /// template still fits the store code.
    pub async fn create_table(&self, root: &Path, table: &str) -> Result<(), DynamoError> {
        create_table(&self.client().await, root, table).await
    }
}

impl Drop for LocalDynamo {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A DynamoDB client for `endpoint` with dummy credentials.
pub async fn client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "tether-local",
        ))
        .endpoint_url(endpoint)
        .load()
        .await;
    aws_sdk_dynamodb::Client::new(&config)
}

/// Creates `table` on `client` from `root/template.yaml`, after checking that the template
/// still fits the store code.
pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    root: &Path,
    table: &str,
) -> Result<(), DynamoError> {
    let path = root.join("template.yaml");
    let template =
        std::fs::read_to_string(&path).map_err(|source| DynamoError::Template { path, source })?;
    let schema = TableSchema::from_template(&template)?;
    schema.check_fits_code()?;
    schema.create_table(client, table).await?;
    Ok(())
}

/// The endpoint's thread: its own runtime, dynoxide on an inner port, the front on `port`.
fn serve(
    port: u16,
    ready: std::sync::mpsc::Sender<Result<SocketAddr, String>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("local-dynamodb")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready.send(Err(err.to_string()));
            return;
        }
    };
    runtime.block_on(async move {
        let started = async {
            let db = dynoxide::Database::memory().map_err(|e| e.to_string())?;
            let inner = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?;
            let inner_addr = inner.local_addr().map_err(|e| e.to_string())?;
            let front = TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|e| format!("127.0.0.1:{port}: {e}"))?;
            let addr = front.local_addr().map_err(|e| e.to_string())?;
            Ok::<_, String>((db, inner, inner_addr, front, addr))
        };
        let (db, inner, inner_addr, front, addr) = match started.await {
            Ok(parts) => parts,
            Err(err) => {
                let _ = ready.send(Err(err));
                return;
            }
        };
        let state = Front {
            inner: format!("http://{inner_addr}"),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap_or_default(),
            faults: Arc::default(),
        };
        let app = Router::new()
            .route("/_tether/faults", any(faults))
            .fallback(forward)
            .with_state(state);
        tracing::info!(%addr, "local DynamoDB endpoint listening");
        let _ = ready.send(Ok(addr));
        // DynamoDB deletes expired items in the background (within days); here a sweep a
        // minute does it, so a TTL the store relies on is seen to work.
        let sweeper = db.clone();
        let sweeps = async move {
            let mut every = tokio::time::interval(TTL_SWEEP);
            every.tick().await;
            loop {
                every.tick().await;
                let db = sweeper.clone();
                match tokio::task::spawn_blocking(move || db.sweep_ttl()).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(deleted)) => tracing::debug!(deleted, "expired items deleted"),
                    Ok(Err(err)) => tracing::warn!(error = %err, "TTL sweep failed"),
                    Err(_) => return,
                }
            }
        };
        tokio::select! {
            _ = sweeps => {}
            _ = dynoxide::server::serve_with_shutdown(inner, db, std::future::pending()) => {}
            _ = std::future::IntoFuture::into_future(axum::serve(front, app)) => {}
            _ = stop => {}
        }
    });
    // Connections still open are cut: a stopped endpoint answers nothing.
    runtime.shutdown_timeout(Duration::from_millis(500));
}

/// How often expired items are deleted.
const TTL_SWEEP: Duration = Duration::from_secs(60);

/// What the front holds.
#[derive(Clone)]
struct Front {
    inner: String,
    http: reqwest::Client,
    faults: Arc<Faults>,
}

#[derive(Debug, Default)]
struct Faults {
    setting: Mutex<Option<FaultSetting>>,
    failed: AtomicU64,
}

#[derive(Debug, Clone)]
struct FaultSetting {
    operations: Vec<String>,
    status: StatusCode,
    code: String,
    refuse: bool,
}

impl Faults {
    fn current(&self) -> Option<FaultSetting> {
        self.setting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn report(&self) -> Value {
        let setting = self.current();
        json!({
            "active": setting.is_some(),
            "operations": setting.map(|s| s.operations).unwrap_or_default(),
            "failed": self.failed.load(Ordering::Relaxed),
        })
    }
}

/// `/_tether/faults`: set (POST), clear (DELETE) or read (GET) the fault.
async fn faults(State(front): State<Front>, method: Method, body: Bytes) -> Response {
    match method {
        Method::POST => {
            let asked: Value = match serde_json::from_slice(&body) {
                Ok(value) => value,
                Err(err) => return bad_fault(&format!("not JSON: {err}")),
            };
            let status = asked["status"].as_u64().unwrap_or(503);
            let Some(status) = u16::try_from(status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .filter(|s| s.is_client_error() || s.is_server_error())
            else {
                return bad_fault("status must be 4xx or 5xx");
            };
            let setting = FaultSetting {
                operations: asked["operations"]
                    .as_array()
                    .map(|ops| {
                        ops.iter()
                            .filter_map(|o| o.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                status,
                code: asked["code"]
                    .as_str()
                    .unwrap_or("ServiceUnavailable")
                    .to_owned(),
                refuse: asked["refuse"].as_bool().unwrap_or(false),
            };
            tracing::warn!(?setting, "fault injected");
            *front
                .faults
                .setting
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(setting);
            front.faults.failed.store(0, Ordering::Relaxed);
        }
        Method::DELETE => {
            *front
                .faults
                .setting
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = None;
            tracing::warn!(
                failed = front.faults.failed.load(Ordering::Relaxed),
                "fault cleared"
            );
        }
        _ => {}
    }
    Json(front.faults.report()).into_response()
}

fn bad_fault(problem: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": format!("bad fault: {problem}") })),
    )
        .into_response()
}

/// Every other request: the injected fault, or dynoxide's answer.
async fn forward(
    State(front): State<Front>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let operation = headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_owned();
    if let Some(fault) = front.faults.current().filter(|f| {
        !operation.is_empty() && (f.operations.is_empty() || f.operations.contains(&operation))
    }) {
        front.faults.failed.fetch_add(1, Ordering::Relaxed);
        if fault.refuse {
            // No answer at all: the client sees its connection closed.
            return refused();
        }
        let body = json!({
            "__type": format!("com.amazonaws.dynamodb.v20120810#{}", fault.code),
            "message": format!("injected fault: {operation} answers {}", fault.code),
        });
        let mut response = (fault.status, body.to_string()).into_response();
        response.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        return response;
    }
    let url = format!(
        "{}{}",
        front.inner,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut request = front.http.request(method, url).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" && name != "connection" {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(err) => {
            tracing::error!(error = %err, "the inner DynamoDB endpoint did not answer");
            return refused();
        }
    };
    let status = answer.status();
    let mut out = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            out.append(name, value.clone());
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = out;
    response
}

/// An answer that closes the connection without a DynamoDB response: the body fails at once,
/// so the server drops the connection and the SDK sees a failure to reach the endpoint.
fn refused() -> Response {
    let body = futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::other("refused by an injected fault"))
    });
    Response::new(Body::from_stream(body))
}

/// A DynamoDB failure for the local endpoint to answer with (the reliability tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Operations that fail (`UpdateItem`, `TransactWriteItems`, ...); empty: every one.
    pub operations: Vec<String>,
    pub status: u16,
    /// The DynamoDB error code, e.g. `ServiceUnavailable` or `InternalServerError`.
    pub code: String,
    /// Close the connection instead of answering (an endpoint that cannot be reached).
    pub refuse: bool,
}

impl Fault {
    /// The operations answer 503 `ServiceUnavailable`; no operations: all of them.
    pub fn unavailable(operations: &[&str]) -> Self {
        Self {
            operations: operations.iter().map(|o| o.to_string()).collect(),
            status: 503,
            code: "ServiceUnavailable".into(),
            refuse: false,
        }
    }

    /// The operations get no answer: the connection is closed; no operations: all of them.
    pub fn refused(operations: &[&str]) -> Self {
        Self {
            refuse: true,
            ..Self::unavailable(operations)
        }
    }
}

/// Makes the local endpoint at `endpoint` answer `fault` (or, with `None`, work again) and
/// returns how many requests the previous fault failed.
pub async fn set_fault(endpoint: &str, fault: Option<&Fault>) -> Result<u64, reqwest::Error> {
    let http = reqwest::Client::new();
    let url = format!("{endpoint}/_tether/faults");
    let request = match fault {
        Some(fault) => http.post(&url).json(&json!({
            "operations": fault.operations,
            "status": fault.status,
            "code": fault.code,
            "refuse": fault.refuse,
        })),
        None => http.delete(&url),
    };
    let before = http
        .get(&url)
        .send()
        .await?
        .error_for_status()?
        .json::<Value>()
        .await?;
    request.send().await?.error_for_status()?;
    Ok(before["failed"].as_u64().unwrap_or(0))
}
