//! `tether executions get|list`.

use clap::Subcommand;
use serde_json::Value;
use tether_domain::{ExecutionId, ExecutionStatus};

use super::{command_id, device_id, execution_id, list, show_list, Paging};
use crate::api::Client;
use crate::exit::{CliError, Exit};
use crate::output::{self, field, pairs, Out};

#[derive(Debug, Subcommand)]
pub enum ExecutionsCmd {
    /// Show one execution and its history.
    #[command(
        after_help = "Example:\n  tether executions get 6f1c2a9e-0d4b-4a57-9a43-1d2f3c4b5a69"
    )]
    Get { execution: String },
    /// List a device's or a command's executions, newest first.
    #[command(
        after_help = "Examples:\n  tether executions list --device dev-1\n  tether executions list --command unlock --status FAILED --all -o json"
    )]
    List {
        /// The device's executions.
        #[arg(long, required_unless_present = "command", conflicts_with = "command")]
        device: Option<String>,
        /// The command's executions.
        #[arg(long)]
        command: Option<String>,
        /// Only this status (CREATED, IN_PROGRESS, SUCCEEDED, FAILED, REJECTED, TIMED_OUT).
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
}

pub enum Executions {
    Get(ExecutionId),
    List {
        path: String,
        query: Vec<(String, String)>,
        all: bool,
    },
}

impl ExecutionsCmd {
    pub fn check(&self) -> Result<Executions, CliError> {
        Ok(match self {
            ExecutionsCmd::Get { execution } => Executions::Get(execution_id(execution)?),
            ExecutionsCmd::List {
                device,
                command,
                status,
                paging,
            } => {
                let path = match (device, command) {
                    (Some(device), None) => format!("/devices/{}/executions", device_id(device)?),
                    (None, Some(command)) => {
                        format!("/commands/{}/executions", command_id(command)?)
                    }
                    _ => return Err(CliError::bad_input("give --device or --command")),
                };
                let (mut query, all) = paging.check()?;
                if let Some(status) = status {
                    ExecutionStatus::parse(status).ok_or_else(|| {
                        CliError::bad_input(format!(
                            "--status {status:?} is not one of CREATED, IN_PROGRESS, SUCCEEDED, FAILED, REJECTED, TIMED_OUT"
                        ))
                    })?;
                    query.push(("status".into(), status.clone()));
                }
                Executions::List { path, query, all }
            }
        })
    }
}

fn show_execution(v: &Value) -> String {
    pairs(&[
        ("execution", field(v, "executionId")),
        ("command", field(v, "commandId")),
        ("target", field(v, "target")),
        ("status", field(v, "status")),
        ("reason", output::reason(v)),
        ("created", field(v, "createdAt")),
        ("updated", field(v, "updatedAt")),
        ("completed", field(v, "completedAt")),
    ]) + &output::block("parameters", v.get("parameters"))
        + &output::block("result", v.get("result"))
        + &output::timeline(v)
}

impl Executions {
    pub(super) async fn run(self, client: &Client, out: Out) -> Result<Exit, CliError> {
        match self {
            Executions::Get(id) => {
                let answer = client.get(&format!("/executions/{id}")).await?;
                out.show(&answer.body, show_execution);
            }
            Executions::List { path, query, all } => {
                let page = list(client, &path, query, all).await?;
                out.show(&page, |v| {
                    show_list(
                        v,
                        &["EXECUTION", "COMMAND", "TARGET", "STATUS", "UPDATED"],
                        |e| {
                            vec![
                                field(e, "executionId"),
                                field(e, "commandId"),
                                field(e, "target"),
                                field(e, "status"),
                                field(e, "updatedAt"),
                            ]
                        },
                    )
                });
            }
        }
        Ok(Exit::Ok)
    }
}
