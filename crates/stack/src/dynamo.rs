//! The local DynamoDB endpoint: moto's server from the repository's venv
//! (`scripts/local_dynamodb.py`), on 127.0.0.1, stopped by process id when dropped. The server
//! also exits by itself when the process that started it is gone, so nothing is left behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use tether_store::{StoreError, TableSchema};

/// Why the endpoint could not be started or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DynamoError {
    #[error("{0} is missing: run `make venv` (the local stack needs the project's Python tools)")]
    NoVenv(PathBuf),
    #[error("cannot start {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the local DynamoDB endpoint did not report its port within {0:?}")]
    NotReady(Duration),
    #[error("unexpected first line from the local DynamoDB endpoint: {0:?}")]
    BadHandshake(String),
    #[error("cannot read {path}")]
    Template {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating the table")]
    Table(#[from] StoreError),
}

/// A running local DynamoDB endpoint.
#[derive(Debug)]
pub struct LocalDynamo {
    child: Mutex<Child>,
    endpoint: String,
}

impl LocalDynamo {
    /// Starts the server on `port` (0: a free one) with the venv's Python under `root`, or
    /// `TETHER_PYTHON`, and waits until it listens.
    pub fn start(root: &Path, port: u16, log: Stdio) -> Result<Self, DynamoError> {
        let python = std::env::var_os("TETHER_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".venv/bin/python"));
        if !python.exists() {
            return Err(DynamoError::NoVenv(python));
        }
        let mut child = Command::new(&python)
            .arg(root.join("scripts/local_dynamodb.py"))
            .args([
                "--port",
                &port.to_string(),
                "--parent-pid",
                &std::process::id().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|source| DynamoError::Spawn {
                program: python.clone(),
                source,
            })?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(DynamoError::BadHandshake("no stdout".into()));
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let wait = Duration::from_secs(60);
        let stop = |mut child: Child| {
            let _ = child.kill();
            let _ = child.wait();
        };
        let line = match rx.recv_timeout(wait) {
            Ok(line) => line,
            Err(_) => {
                stop(child);
                return Err(DynamoError::NotReady(wait));
            }
        };
        match line
            .trim()
            .strip_prefix("port=")
            .and_then(|p| p.parse::<u16>().ok())
        {
            Some(port) => Ok(Self {
                child: Mutex::new(child),
                endpoint: format!("http://127.0.0.1:{port}"),
            }),
            None => {
                stop(child);
                Err(DynamoError::BadHandshake(line))
            }
        }
    }

    /// `http://127.0.0.1:{port}`: the value for `AWS_ENDPOINT_URL_DYNAMODB`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A client for this endpoint with dummy credentials.
    pub async fn client(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "local",
                "local",
                None,
                None,
                "tether-local",
            ))
            .endpoint_url(&self.endpoint)
            .load()
            .await;
        aws_sdk_dynamodb::Client::new(&config)
    }

    /// Creates `table` with the definition in `root/template.yaml`, after checking that the
    /// template still fits the store code.
    pub async fn create_table(&self, root: &Path, table: &str) -> Result<(), DynamoError> {
        let path = root.join("template.yaml");
        let template = std::fs::read_to_string(&path)
            .map_err(|source| DynamoError::Template { path, source })?;
        let schema = TableSchema::from_template(&template)?;
        schema.check_fits_code()?;
        schema.create_table(&self.client().await, table).await?;
        Ok(())
    }
}

/// A DynamoDB failure for the local endpoint to answer with (the reliability tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Operations that fail (`UpdateItem`, `TransactWriteItems`, ...); empty: every one.
    pub operations: Vec<String>,
    pub status: u16,
    /// The DynamoDB error code, e.g. `ServiceUnavailable` or `InternalServerError`.
    pub code: String,
}

impl Fault {
    /// The operations answer 503 `ServiceUnavailable`; no operations: all of them.
    pub fn unavailable(operations: &[&str]) -> Self {
        Self {
            operations: operations.iter().map(|o| o.to_string()).collect(),
            status: 503,
            code: "ServiceUnavailable".into(),
        }
    }
}

/// Makes the local endpoint at `endpoint` answer `fault` (or, with `None`, work again) and
/// returns how many requests the previous fault failed.
pub async fn set_fault(endpoint: &str, fault: Option<&Fault>) -> anyhow::Result<u64> {
    let http = reqwest::Client::new();
    let url = format!("{endpoint}/_tether/faults");
    let request = match fault {
        Some(fault) => http.post(&url).json(&serde_json::json!({
            "operations": fault.operations,
            "status": fault.status,
            "code": fault.code,
        })),
        None => http.delete(&url),
    };
    let before = http
        .get(&url)
        .send()
        .await?
        .error_for_status()?
        .json::<serde_json::Value>()
        .await?;
    request.send().await?.error_for_status()?;
    Ok(before["failed"].as_u64().unwrap_or(0))
}

impl Drop for LocalDynamo {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}
