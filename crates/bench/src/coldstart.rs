//! Cold start and footprint of a function binary: a minimal Lambda Runtime API served here
//! hands the process one event; measured are the time from spawning the process to its first
//! `GET .../invocation/next` (its init), the time from handing it the event to its answer (its
//! first call), the peak RSS once it has answered that event, and the size of the deployment
//! zip (the binary as `bootstrap`, deflated).

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::mpsc;

/// What one cold start measured.
#[derive(Debug, Clone, Copy)]
pub struct ColdStart {
    pub init_ms: f64,
    /// From handing the process its first event to its answer: the first call, which pays
    /// whatever init left for later (connections, the trust store, lazily built clients).
    pub first_call_ms: f64,
    pub peak_rss_kib: u64,
}

#[derive(Debug)]
enum Seen {
    Next,
    Answered,
}

struct Api {
    event: Value,
    handed_out: AtomicBool,
    seen: mpsc::UnboundedSender<Seen>,
}

async fn next(State(api): State<Arc<Api>>) -> (HeaderMap, String) {
    let _ = api.seen.send(Seen::Next);
    if api.handed_out.swap(true, Ordering::SeqCst) {
        // One event per process: the second poll waits until the process is stopped.
        std::future::pending::<()>().await;
    }
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + 30_000)
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", "bench-0001".to_owned()),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:000000000000:function:bench".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    (headers, api.event.to_string())
}

async fn answered(State(api): State<Arc<Api>>) -> &'static str {
    let _ = api.seen.send(Seen::Answered);
    "{}"
}

/// Peak resident set size of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM")
}

/// Starts `binary` against a Runtime API that hands it `event`, and measures it.
pub async fn measure(
    binary: &Path,
    event: Value,
    env: &[(String, String)],
) -> anyhow::Result<ColdStart> {
    let (seen, mut events) = mpsc::unbounded_channel();
    let api = Arc::new(Api {
        event,
        handed_out: AtomicBool::new(false),
        seen,
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(answered),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(answered))
        .route("/2018-06-01/runtime/init/error", post(answered))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id().context("no pid")?;

    let outcome = async {
        let wait = Duration::from_secs(20);
        let first = tokio::time::timeout(wait, events.recv())
            .await
            .context("no first poll")?;
        let init = started.elapsed();
        if !matches!(first, Some(Seen::Next)) {
            bail!("the function reported an init error");
        }
        // The first poll is answered with the event at once.
        let handed_out = Instant::now();
        let first_call = loop {
            match tokio::time::timeout(wait, events.recv())
                .await
                .context("no answer")?
            {
                Some(Seen::Answered) => break handed_out.elapsed(),
                Some(Seen::Next) => {}
                None => bail!("the Runtime API stopped"),
            }
        };
        // The second poll for work comes once the answer is sent.
        tokio::time::timeout(wait, events.recv())
            .await
            .context("no second poll")?;
        Ok(ColdStart {
            init_ms: crate::stats::ms(init),
            first_call_ms: crate::stats::ms(first_call),
            peak_rss_kib: peak_rss_kib(pid)?,
        })
    }
    .await;
    let _ = child.kill().await;
    server.abort();
    outcome
}

/// The size of the deployment zip of `binary` (as `bootstrap`, deflated at level 9), in bytes.
pub fn zipped_size(binary: &Path, scratch: &Path) -> anyhow::Result<u64> {
    let zip = scratch.join(format!(
        "{}.zip",
        binary
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("function")
    ));
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z:\n\
             \x20   z.write(sys.argv[2], 'bootstrap')",
        ])
        .arg(&zip)
        .arg(binary)
        .status()
        .context("python3 (zipfile)")?;
    if !status.success() {
        bail!("zipping {} failed", binary.display());
    }
    Ok(std::fs::metadata(&zip)?.len())
}
