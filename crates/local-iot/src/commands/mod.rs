//! AWS IoT Commands, emulated: command resources, executions, the device topics, timeouts and
//! execution events, as `docs/aws-iot-reference.md` §2 describes them.
//!
//! State lives in memory behind one mutex. Nothing is held across an `.await`: each operation
//! changes the state, collects the MQTT messages it implies, and publishes them afterwards.
//!
//! Layout:
//! - `state`: what is kept (commands, executions, client tokens) and the [`Commands`] service
//!   that holds it, locks it and publishes;
//! - `resources`: CreateCommand, GetCommand, ListCommands, UpdateCommand, DeleteCommand;
//! - `executions`: StartCommandExecution, the cloud-side timeout, devices' responses and the
//!   execution events they announce;
//! - `execution_queries`: GetCommandExecution, ListCommandExecutions, DeleteCommandExecution;
//! - `payload`: parameter values, payload templates and their placeholders;
//! - `paging`: `maxResults`, `nextToken` and `sortOrder` of the List operations.

mod execution_queries;
mod executions;
pub(crate) mod paging;
mod payload;
mod resources;
mod state;

use serde_json::{json, Value};

pub use state::Commands;

/// Epoch milliseconds as the API writes times: epoch seconds, with a fraction.
pub(crate) fn secs(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}
