//! The keys of execution and invocation items (one table, see `schema`):
//! - record: `pk = EXEC#{executionId}` or `INV#{requestId}`, `sk = RECORD`;
//! - timeline entry: same `pk`, `sk = EVENT#{at_ms, 15 digits}#{fingerprint}`, so a record and
//!   its history come back from one query, oldest event first;
//! - index keys on the record: `gsi1pk = DEVICE#{deviceId}#EXEC|INV` and
//!   `gsi2pk = COMMAND#{commandId}`, both sorted by `{createdAt}#{id}`.

use tether_domain::{CommandId, DeviceId, ExecutionId, Phase, RequestId};

/// The sort key of a record (its partition's other items are its timeline).
pub(crate) const RECORD_SK: &str = "RECORD";
/// The partition key prefix of execution records.
pub(crate) const EXECUTION_PREFIX: &str = "EXEC#";
const INVOCATION_PREFIX: &str = "INV#";
const EVENT_PREFIX: &str = "EVENT#";

/// Which record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Execution(ExecutionId),
    Invocation(RequestId),
}

impl RecordKey {
    /// The record's partition key.
    pub(crate) fn pk(&self) -> String {
        match self {
            RecordKey::Execution(id) => format!("{EXECUTION_PREFIX}{id}"),
            RecordKey::Invocation(id) => format!("{INVOCATION_PREFIX}{id}"),
        }
    }

    pub(crate) fn id(&self) -> &str {
        match self {
            RecordKey::Execution(id) => id.as_str(),
            RecordKey::Invocation(id) => id.as_str(),
        }
    }

    /// The record's `kind` attribute.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RecordKey::Execution(_) => "execution",
            RecordKey::Invocation(_) => "invocation",
        }
    }
}

/// The per-device index partition of `device`'s executions or invocations (as `key` is).
pub(crate) fn device_partition(device: &DeviceId, key: &RecordKey) -> String {
    match key {
        RecordKey::Execution(_) => device_executions(device),
        RecordKey::Invocation(_) => format!("DEVICE#{device}#INV"),
    }
}

/// The per-device index partition of `device`'s executions.
pub(crate) fn device_executions(device: &DeviceId) -> String {
    format!("DEVICE#{device}#EXEC")
}

/// The per-command index partition of `command`'s executions.
pub(crate) fn command_partition(command: &CommandId) -> String {
    format!("COMMAND#{command}")
}

/// The index sort key of a record: newest first when the index is read backwards.
pub(crate) fn index_sort_key(created_ms: i64, id: &str) -> String {
    format!("{:015}#{id}", created_ms.max(0))
}

/// The sort key of a timeline entry of `phase`, reported at `at_ms`, whose content has
/// `fingerprint`. A record is created once, but its creation can be reported twice with
/// different clocks (the start call, then AWS IoT's CREATED event): creation entries are keyed
/// without their time, so the second report is a duplicate, and they sort first.
pub(crate) fn event_sort_key(phase: Phase, at_ms: i64, fingerprint: u64) -> String {
    let at = if phase == Phase::Created {
        0
    } else {
        at_ms.max(0)
    };
    format!("{EVENT_PREFIX}{at:015}#{fingerprint:016x}")
}
