//! The subcommands: their arguments, the checks made before anything is sent (the domain's
//! own rules), the requests, and what is printed.

mod commands;
mod executions;
mod invoke;
mod jobs;
mod run;

use clap::Args;
use serde_json::{json, Value};
use tether_domain::api::LIST_LIMIT;
use tether_domain::ids::{is_idempotency_key, IDEMPOTENCY_KEY_RULE};
use tether_domain::{ApiError, CommandId, DeviceId, ExecutionId, RequestId};

use crate::api::{with_query, Client};
use crate::exit::{CliError, Exit};
use crate::output::{table, Out};

pub use commands::{Commands, CommandsCmd};
pub use executions::{Executions, ExecutionsCmd};
use invoke::{show_device, show_invocation};
pub use invoke::{Invoke, InvokeArgs};
pub use jobs::{Jobs, JobsCmd};
pub use run::{Run, RunArgs, POLL};

fn domain(err: ApiError) -> CliError {
    CliError::bad_input(err.to_string())
}

pub fn device_id(text: &str) -> Result<DeviceId, CliError> {
    DeviceId::parse(text).map_err(|e| CliError::bad_input(e.to_string()))
}

pub fn request_id(text: &str) -> Result<RequestId, CliError> {
    RequestId::parse(text).map_err(|e| CliError::bad_input(e.to_string()))
}

fn command_id(text: &str) -> Result<CommandId, CliError> {
    CommandId::parse(text).map_err(|e| CliError::bad_input(e.to_string()))
}

fn execution_id(text: &str) -> Result<ExecutionId, CliError> {
    ExecutionId::parse(text).map_err(|e| CliError::bad_input(e.to_string()))
}

fn idempotency_key(key: &Option<String>) -> Result<Option<String>, CliError> {
    match key {
        Some(key) if !is_idempotency_key(key) => Err(CliError::bad_input(IDEMPOTENCY_KEY_RULE)),
        other => Ok(other.clone()),
    }
}

/// Page size and whether to read every page.
#[derive(Debug, Args)]
pub struct Paging {
    /// Items per page (1-100).
    #[arg(long)]
    limit: Option<u32>,
    /// Read every page (else the first, with its nextToken).
    #[arg(long)]
    all: bool,
}

impl Paging {
    fn check(&self) -> Result<(Vec<(String, String)>, bool), CliError> {
        let mut query = Vec::new();
        if let Some(limit) = self.limit {
            if !LIST_LIMIT.contains(&limit) {
                return Err(CliError::bad_input(format!(
                    "--limit must be between {} and {}",
                    LIST_LIMIT.start(),
                    LIST_LIMIT.end()
                )));
            }
            query.push(("limit".to_owned(), limit.to_string()));
        }
        Ok((query, self.all))
    }
}

/// A checked request: everything in it was validated; nothing was sent yet.
pub enum Request {
    Invoke(Invoke),
    Device(DeviceId),
    Invocation(RequestId),
    Commands(Commands),
    Run(Run),
    Executions(Executions),
    Jobs(Jobs),
}

impl Request {
    pub async fn run(self, client: &Client, out: Out) -> Result<Exit, CliError> {
        match self {
            Request::Invoke(invoke) => invoke.run(client, out).await,
            Request::Device(device) => {
                let answer = client.get(&format!("/devices/{device}")).await?;
                out.show(&answer.body, show_device);
                Ok(Exit::Ok)
            }
            Request::Invocation(id) => {
                let answer = client.get(&format!("/invocations/{id}")).await?;
                out.show(&answer.body, show_invocation);
                Ok(Exit::Ok)
            }
            Request::Commands(commands) => commands.run(client, out).await,
            Request::Run(run) => run.run(client, out).await,
            Request::Executions(executions) => executions.run(client, out).await,
            Request::Jobs(jobs) => jobs.run(client, out).await,
        }
    }
}

/// The exit code of a record's final status.
fn exit_of(status: &str) -> Exit {
    match status {
        "SUCCEEDED" => Exit::Ok,
        "FAILED" | "REJECTED" => Exit::DeviceFailed,
        _ => Exit::Deadline,
    }
}

/// A list page's items as a table, with the next page's token when there is one.
fn show_list(v: &Value, headers: &[&str], row: fn(&Value) -> Vec<String>) -> String {
    let items = v
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    let mut text = table(headers, &rows);
    if let Some(token) = v.get("nextToken").and_then(Value::as_str) {
        text.push_str(&format!("(more: --all, or the API's nextToken {token})\n"));
    }
    text
}

async fn list(
    client: &Client,
    path: &str,
    query: Vec<(String, String)>,
    all: bool,
) -> Result<Value, CliError> {
    if all {
        let items = client.all_pages(path, &query).await?;
        Ok(json!({ "items": items }))
    } else {
        Ok(client.get(&with_query(path, &query)).await?.body)
    }
}
