//! Test support: the real local parts, started on free ports and stopped by process id.
//!
//! - [`LocalDynamo`]: the local DynamoDB endpoint (moto's server from the repository's venv,
//!   `scripts/local_dynamodb.py`). Tests in one binary share one server while any of them holds
//!   it; the last one to let go stops it. The server also exits on its own if the test process
//!   dies, so no run leaves it behind.
//! - [`LocalDynamo::fresh_store`]: a [`Store`] on a new table created from `template.yaml`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use tether_store::{Store, TableSchema};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's Python, or `TETHER_PYTHON`.
fn python() -> PathBuf {
    std::env::var_os("TETHER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"))
}

/// A running local DynamoDB endpoint.
#[derive(Debug)]
pub struct LocalDynamo {
    child: Mutex<Child>,
    endpoint: String,
}

static SHARED: Mutex<Weak<LocalDynamo>> = Mutex::new(Weak::new());
static TABLES: AtomicU32 = AtomicU32::new(0);

impl LocalDynamo {
    /// Starts a server of its own on a free port and waits until it listens.
    pub fn start() -> Self {
        let python = python();
        assert!(
            python.exists(),
            "{} is missing: run `make venv` (the tests need the project's Python tools)",
            python.display()
        );
        let mut child = Command::new(&python)
            .arg(repo_root().join("scripts/local_dynamodb.py"))
            .args([
                "--port",
                "0",
                "--parent-pid",
                &std::process::id().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("TETHER_TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the local DynamoDB endpoint did not report its port within 60 s");
            }
        };
        let port: u16 = line
            .trim()
            .strip_prefix("port=")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!("unexpected first line from the local DynamoDB endpoint: {line:?}")
            });
        Self {
            child: Mutex::new(child),
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The server shared by the tests of this process, started on first use.
    pub fn shared() -> Arc<Self> {
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = slot.upgrade() {
            return running;
        }
        let started = Arc::new(Self::start());
        *slot = Arc::downgrade(&started);
        started
    }

    /// `http://127.0.0.1:{port}`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A DynamoDB client for this endpoint, built like the functions build theirs, with dummy
    /// credentials.
    pub async fn client(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "test",
                "test",
                None,
                None,
                "tether-testkit",
            ))
            .endpoint_url(&self.endpoint)
            .load()
            .await;
        aws_sdk_dynamodb::Client::new(&config)
    }

    /// A store on a new, empty table created from `template.yaml`.
    pub async fn fresh_store(&self) -> Store {
        let client = self.client().await;
        let table = format!(
            "tether-test-{}-{}",
            std::process::id(),
            TABLES.fetch_add(1, Ordering::Relaxed)
        );
        create_table_from_template(&client, &table).await;
        Store::new(client, table)
    }
}

/// Creates `table` with the definition in `template.yaml`, after checking that the template
/// still fits the store code.
pub async fn create_table_from_template(client: &aws_sdk_dynamodb::Client, table: &str) {
    let template = std::fs::read_to_string(repo_root().join("template.yaml"))
        .expect("template.yaml is readable");
    let schema = TableSchema::from_template(&template).expect("template.yaml defines the table");
    schema
        .check_fits_code()
        .expect("template.yaml fits the store code");
    schema
        .create_table(client, table)
        .await
        .expect("table created on the local endpoint");
}

impl Drop for LocalDynamo {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}
