//! What the Commands service keeps in memory, and the [`Commands`] handle that holds it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use tether_domain::reply::ResultValue;
use tether_domain::topics::TargetKind;
use tether_domain::{DeviceId, ExecutionStatus, Source, StatusReason};

use crate::aws::Account;
use crate::link::{Link, Outgoing};

/// A command's static payload: its bytes and, if given, their content type.
pub(super) type StaticPayload = (Vec<u8>, Option<String>);

#[derive(Debug, Clone)]
pub(super) struct Command {
    pub(super) id: String,
    pub(super) display_name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) payload: Option<StaticPayload>,
    pub(super) payload_template: Option<String>,
    pub(super) preprocessor: Option<Value>,
    pub(super) mandatory_parameters: Vec<Value>,
    pub(super) created_at: i64,
    pub(super) last_updated_at: i64,
    pub(super) deprecated: bool,
    pub(super) deprecated_at: Option<i64>,
    pub(super) pending_deletion: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Execution {
    pub(super) id: String,
    pub(super) command_id: String,
    pub(super) target_arn: String,
    pub(super) kind: TargetKind,
    pub(super) target: DeviceId,
    pub(super) status: ExecutionStatus,
    pub(super) source: Source,
    pub(super) reason: Option<StatusReason>,
    pub(super) result: Option<BTreeMap<String, ResultValue>>,
    pub(super) parameters: Option<Value>,
    pub(super) timeout_s: i64,
    pub(super) created_at: i64,
    pub(super) last_updated_at: i64,
    pub(super) started_at: Option<i64>,
    pub(super) completed_at: Option<i64>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) commands: BTreeMap<String, Command>,
    pub(super) executions: HashMap<String, Execution>,
    /// clientToken → (fingerprint of the request, execution id)
    pub(super) tokens: HashMap<String, (u64, String)>,
}

/// The Commands service.
#[derive(Clone)]
pub struct Commands {
    state: Arc<Mutex<State>>,
    pub(super) account: Account,
    publisher: Link,
    pub(super) deletion_grace: Duration,
}

impl Commands {
    pub fn new(account: Account, publisher: Link, deletion_grace: Duration) -> Self {
        Self {
            state: Arc::default(),
            account,
            publisher,
            deletion_grace,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) async fn publish_all(&self, messages: Vec<Outgoing>) {
        self.publisher.publish_all(messages).await;
    }
}
