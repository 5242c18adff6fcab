//! Test support: the real local parts, started on free ports and stopped by process id.
//!
//! - [`LocalDynamo::shared`]: the local DynamoDB endpoint ([`tether_local_dynamodb`], in this
//!   process, or `AWS_ENDPOINT_URL_DYNAMODB` when set) shared by the tests of one binary while
//!   any of them holds it; the last one to let go stops it.
//! - [`LocalDynamo::fresh_store`]: a [`Store`] on a new table created from `template.yaml`.
//! - [`iot`]: the AWS IoT SDK clients on a local-iot endpoint and the Commands calls the
//!   emulator and device tests share.

pub mod iot;
pub mod tls;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tether_store::Store;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A local DynamoDB endpoint for tests.
#[derive(Debug)]
pub struct LocalDynamo {
    inner: tether_local_dynamodb::LocalDynamo,
}

static SHARED: Mutex<Weak<LocalDynamo>> = Mutex::new(Weak::new());
static TABLES: AtomicU32 = AtomicU32::new(0);

impl LocalDynamo {
    /// Starts an endpoint of its own on a free port (or uses `AWS_ENDPOINT_URL_DYNAMODB`).
    pub fn start() -> Self {
        let inner = tether_local_dynamodb::LocalDynamo::from_env_or_start(0)
            .unwrap_or_else(|e| panic!("{e}"));
        Self { inner }
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
        self.inner.endpoint()
    }

    /// A DynamoDB client for this endpoint.
    pub async fn client(&self) -> aws_sdk_dynamodb::Client {
        self.inner.client().await
    }

    /// A store on a new, empty table created from `template.yaml`.
    pub async fn fresh_store(&self) -> Store {
        let table = format!(
            "tether-test-{}-{}",
            std::process::id(),
            TABLES.fetch_add(1, Ordering::Relaxed)
        );
        self.inner
            .create_table(&repo_root(), &table)
            .await
            .unwrap_or_else(|e| panic!("creating {table}: {e:?}"));
        Store::new(self.client().await, table)
    }
}
