//! AWS IoT Jobs, emulated: the control plane (`iot`), the device API over MQTT
//! (`$aws/things/{thing}/jobs/...`) and over HTTPS (`iot-jobs-data`), rollout, timeouts,
//! retries, abort thresholds, cancellation, and the job and job-execution events, as
//! `docs/aws-iot-reference.md` §3 describes them.
//!
//! State lives in memory behind one mutex. Nothing is held across an `.await`: each operation
//! changes the state, collects the MQTT messages it implies, and publishes them afterwards
//! ([`lifecycle`]). A Jobs "minute" (rollout rates, timeouts) lasts [`crate::Config::jobs_minute`],
//! one minute unless a test shortens it.
//!
//! Layout:
//! - `state`: jobs, executions, what each thing was last notified, and the [`Jobs`] handle;
//! - `control`: the control-plane operations;
//! - `device`: the device operations, shared by both transports, and the MQTT front;
//! - `lifecycle`: rollout, timers, retries, abort, completion, notifications and events.

mod control;
mod device;
mod lifecycle;
mod state;

use serde_json::{json, Value};

pub use control::MAX_DOCUMENT_BYTES;

/// Reads an UpdateJobExecution body (MQTT or HTTPS) as the device API does, without applying
/// it: what the `jobs` fuzz target drives. The error is the rejection's `code` and message.
pub fn check_update_request(body: &[u8]) -> Result<(), (&'static str, String)> {
    let body: Value = serde_json::from_slice(body)
        .ok()
        .filter(Value::is_object)
        .ok_or(("InvalidJson", "the request is not a JSON object".to_owned()))?;
    device::Update::parse(&body)
        .map(|_| ())
        .map_err(|e| (e.code, e.message))
}
pub use state::Jobs;

pub(crate) use crate::commands::secs;
use lifecycle::epoch_s;
use state::Execution;

/// A JobExecutionSummary as the device API writes it (times in epoch seconds).
fn summary_mqtt(e: &Execution) -> Value {
    let mut out = json!({
        "jobId": e.job,
        "queuedAt": epoch_s(e.queued_at),
        "lastUpdatedAt": epoch_s(e.last_updated_at),
        "versionNumber": e.version,
        "executionNumber": e.number,
    });
    if let Some(at) = e.started_at {
        out["startedAt"] = json!(epoch_s(at));
    }
    out
}

/// A JobExecution as the device API writes it; the document as a JSON object (MQTT).
fn execution_mqtt(e: &Execution, document: Option<&Value>, now: i64) -> Value {
    let mut out = summary_mqtt(e);
    out["thingName"] = json!(e.thing);
    out["status"] = json!(e.status.as_str());
    out["statusDetails"] = json!(e.status_details);
    if let Some(document) = document {
        out["jobDocument"] = document.clone();
    }
    if let Some(s) = e.seconds_before_timeout(now) {
        out["approximateSecondsBeforeTimedOut"] = json!(s);
    }
    out
}

/// The same over HTTPS, where the document is a string.
fn execution_https(e: &Execution, document: Option<&Value>, now: i64) -> Value {
    let mut out = execution_mqtt(e, None, now);
    if let Some(document) = document {
        out["jobDocument"] = json!(document.to_string());
    }
    out
}
