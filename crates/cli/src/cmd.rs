//! The subcommands: their arguments, the checks made before anything is sent (the domain's
//! own rules), the requests, and what is printed.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};
use tether_domain::api::{
    CommandPayload, CreateCommandRequest, InvokeRequest, StartExecutionsRequest,
    UpdateCommandRequest, LIST_LIMIT,
};
use tether_domain::ids::{is_idempotency_key, IDEMPOTENCY_KEY_RULE};
use tether_domain::{ApiError, CommandId, DeviceId, ExecutionId, ExecutionStatus, RequestId};

use crate::api::{encode, with_query, Client};
use crate::exit::{exit_for, CliError, Exit};
use crate::input;
use crate::output::{self, field, pairs, table, Out};

/// How long `run --wait` waits between looks at the executions.
pub const POLL: Duration = Duration::from_millis(300);

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

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The device (its thing name and MQTT client id).
    device: String,
    /// The method the device runs.
    method: String,
    /// The request's payload: JSON, @FILE, or - for stdin (default {}).
    #[arg(long, value_name = "JSON|@FILE|-")]
    payload: Option<String>,
    /// How long the device has to answer: 100ms to 25s (default 10s).
    #[arg(long, value_parser = input::duration, value_name = "DURATION")]
    timeout: Option<Duration>,
    /// A retry with the same key returns the first call's answer instead of calling again.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CommandsCmd {
    /// Create a command: a static payload, or a payload template with parameters.
    #[command(
        after_help = "Examples:\n  tether commands create unlock --payload '{\"door\": \"front\"}'\n  tether commands create set-level --template '{\"level\": \"${aws:iot:commandexecution::parameter:level}\"}' --parameter level\n  tether commands create firmware --payload-file fw.bin --content-type application/octet-stream"
    )]
    Create(CreateArgs),
    /// List the commands.
    #[command(
        after_help = "Examples:\n  tether commands list\n  tether commands list --all -o json"
    )]
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one command.
    #[command(after_help = "Example:\n  tether commands get unlock")]
    Get { command: String },
    /// Change a command's display name or description.
    #[command(
        after_help = "Example:\n  tether commands update unlock --display-name 'Unlock the door'"
    )]
    Update {
        command: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Deprecate a command: it starts no new executions (--undo to allow them again).
    #[command(
        after_help = "Examples:\n  tether commands deprecate unlock\n  tether commands deprecate unlock --undo"
    )]
    Deprecate {
        command: String,
        #[arg(long)]
        undo: bool,
    },
    /// Delete a command (AWS IoT may keep it, pending deletion, for a while).
    #[command(after_help = "Example:\n  tether commands delete unlock")]
    Delete { command: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The command's id (else one is made up).
    command: Option<String>,
    /// A static JSON payload: JSON, @FILE, or -.
    #[arg(long, value_name = "JSON|@FILE|-", conflicts_with_all = ["payload_file", "template"])]
    payload: Option<String>,
    /// A static payload of any content type, read from a file (sent as base64).
    #[arg(
        long,
        value_name = "FILE",
        requires = "content_type",
        conflicts_with = "template"
    )]
    payload_file: Option<std::path::PathBuf>,
    /// The payload's content type (default application/json).
    #[arg(long)]
    content_type: Option<String>,
    /// A JSON payload template with ${aws:iot:commandexecution::parameter:NAME} placeholders.
    #[arg(long, value_name = "JSON|@FILE|-")]
    template: Option<String>,
    /// A parameter the template needs: NAME, or NAME=DEFAULT / NAME:TYPE=DEFAULT.
    #[arg(long = "parameter", value_name = "NAME[=DEFAULT]")]
    parameters: Vec<String>,
    #[arg(long)]
    display_name: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// A retry with the same key creates nothing new.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The command to start.
    command: String,
    /// A device to run it on (repeat for more, up to 100).
    #[arg(long = "target", required = true, value_name = "DEVICE")]
    targets: Vec<String>,
    /// A parameter: NAME=VALUE (a string, or AWS's {"TYPE": value}) or NAME:TYPE=VALUE.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// How long each execution may take before AWS IoT times it out (at least 1s).
    #[arg(long, value_parser = input::duration, value_name = "DURATION")]
    timeout: Option<Duration>,
    /// Follow each target until it ends or this much time has passed.
    #[arg(long, value_parser = input::duration, value_name = "DURATION")]
    wait: Option<Duration>,
    /// A retry with the same key starts nothing new.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

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

// ---------------------------------------------------------------------------------------------
// Checked requests: everything below was validated; nothing was sent yet.

pub enum Request {
    Invoke(Invoke),
    Device(DeviceId),
    Invocation(RequestId),
    Commands(Commands),
    Run(Run),
    Executions(Executions),
}

pub struct Invoke {
    device: DeviceId,
    body: Value,
    key: Option<String>,
}

pub enum Commands {
    Create {
        body: Value,
        key: Option<String>,
    },
    List {
        query: Vec<(String, String)>,
        all: bool,
    },
    Get(CommandId),
    Update {
        id: CommandId,
        body: Value,
    },
    Delete(CommandId),
}

pub struct Run {
    command: CommandId,
    body: Value,
    wait: Option<Duration>,
    key: Option<String>,
}

pub enum Executions {
    Get(ExecutionId),
    List {
        path: String,
        query: Vec<(String, String)>,
        all: bool,
    },
}

impl InvokeArgs {
    pub fn check(&self) -> Result<Invoke, CliError> {
        let device = device_id(&self.device)?;
        let payload = match &self.payload {
            Some(argument) => Some(input::json_argument("--payload", argument)?),
            None => None,
        };
        let request = InvokeRequest {
            method: self.method.clone(),
            payload,
            timeout_ms: self.timeout.map(|t| t.as_millis() as u64),
        };
        request.clone().validate().map_err(domain)?;
        let body = serde_json::to_value(&request).map_err(anyhow::Error::from)?;
        Ok(Invoke {
            device,
            body,
            key: idempotency_key(&self.idempotency_key)?,
        })
    }
}

impl CommandsCmd {
    pub fn check(&self) -> Result<Commands, CliError> {
        Ok(match self {
            CommandsCmd::Create(args) => args.check()?,
            CommandsCmd::List { paging } => {
                let (query, all) = paging.check()?;
                Commands::List { query, all }
            }
            CommandsCmd::Get { command } => Commands::Get(command_id(command)?),
            CommandsCmd::Update {
                command,
                display_name,
                description,
            } => update(command, display_name.clone(), description.clone(), None)?,
            CommandsCmd::Deprecate { command, undo } => update(command, None, None, Some(!undo))?,
            CommandsCmd::Delete { command } => Commands::Delete(command_id(command)?),
        })
    }
}

fn update(
    command: &str,
    display_name: Option<String>,
    description: Option<String>,
    deprecated: Option<bool>,
) -> Result<Commands, CliError> {
    let request = UpdateCommandRequest {
        display_name,
        description,
        deprecated,
    };
    request.validate().map_err(domain)?;
    Ok(Commands::Update {
        id: command_id(command)?,
        body: serde_json::to_value(&request).map_err(anyhow::Error::from)?,
    })
}

impl CreateArgs {
    fn check(&self) -> Result<Commands, CliError> {
        let payload = if let Some(argument) = &self.payload {
            Some(CommandPayload {
                content: input::json_argument("--payload", argument)?,
                content_type: Some(
                    self.content_type
                        .clone()
                        .unwrap_or_else(|| "application/json".into()),
                ),
            })
        } else if let Some(path) = &self.payload_file {
            let bytes = std::fs::read(path).map_err(|e| {
                CliError::bad_input(format!("--payload-file {}: {e}", path.display()))
            })?;
            Some(CommandPayload {
                content: Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
                content_type: self.content_type.clone(),
            })
        } else {
            None
        };
        let payload_template = match &self.template {
            Some(argument) => Some(input::json_argument("--template", argument)?),
            None => None,
        };
        let mut mandatory = Vec::new();
        for item in &self.parameters {
            mandatory.push(match item.split_once('=') {
                None if !item.is_empty() => json!({ "name": item }),
                None => return Err(CliError::bad_input("--parameter needs a name")),
                Some(_) => {
                    let (name, default) = input::parameter(item)?;
                    json!({ "name": name, "defaultValue": default })
                }
            });
        }
        if let Some(id) = &self.command {
            command_id(id)?;
        }
        let request = CreateCommandRequest {
            command_id: self.command.clone(),
            display_name: self.display_name.clone(),
            description: self.description.clone(),
            payload,
            payload_template,
            mandatory_parameters: (!mandatory.is_empty()).then_some(mandatory),
        };
        request.validate().map_err(domain)?;
        Ok(Commands::Create {
            body: serde_json::to_value(&request).map_err(anyhow::Error::from)?,
            key: idempotency_key(&self.idempotency_key)?,
        })
    }
}

impl RunArgs {
    pub fn check(&self) -> Result<Run, CliError> {
        let command = command_id(&self.command)?;
        let timeout_seconds = match self.timeout {
            Some(t) if t.as_millis() % 1000 != 0 => {
                return Err(CliError::bad_input(
                    "--timeout of an execution is whole seconds (e.g. 30s or 2m)",
                ))
            }
            Some(t) => Some(t.as_secs()),
            None => None,
        };
        let request = StartExecutionsRequest {
            targets: self.targets.clone(),
            target_type: None,
            parameters: input::parameters(&self.params)?,
            timeout_seconds,
            wait_ms: None,
        };
        request.clone().validate().map_err(domain)?;
        Ok(Run {
            command,
            body: serde_json::to_value(&request).map_err(anyhow::Error::from)?,
            wait: self.wait,
            key: idempotency_key(&self.idempotency_key)?,
        })
    }
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

// ---------------------------------------------------------------------------------------------
// Running them

impl Request {
    pub async fn run(self, client: &Client, out: Out) -> Result<Exit, CliError> {
        match self {
            Request::Invoke(invoke) => invoke.run(client, out).await,
            Request::Device(device) => {
                let answer = client
                    .call(Method::GET, &format!("/devices/{device}"), None, None)
                    .await?;
                out.show(&answer.body, show_device);
                Ok(Exit::Ok)
            }
            Request::Invocation(id) => {
                let answer = client
                    .call(Method::GET, &format!("/invocations/{id}"), None, None)
                    .await?;
                out.show(&answer.body, show_invocation);
                Ok(Exit::Ok)
            }
            Request::Commands(commands) => commands.run(client, out).await,
            Request::Run(run) => run.run(client, out).await,
            Request::Executions(executions) => executions.run(client, out).await,
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

impl Invoke {
    async fn run(self, client: &Client, out: Out) -> Result<Exit, CliError> {
        let path = format!("/devices/{}/invoke", self.device);
        let answer = client
            .call(Method::POST, &path, Some(&self.body), self.key.as_deref())
            .await?;
        out.show(&answer.body, |v| {
            let mut text = format!(
                "{}  {} {}  {} ms  request {}\n",
                field(v, "status"),
                field(v, "deviceId"),
                field(v, "method"),
                field(v, "elapsedMs"),
                field(v, "requestId"),
            );
            if v.get("statusReason").is_some() {
                text.push_str(&format!("reason  {}\n", output::reason(v)));
            }
            text + &output::block("result", v.get("result"))
        });
        Ok(exit_of(&field(&answer.body, "status")))
    }
}

fn show_device(v: &Value) -> String {
    pairs(&[
        ("device", field(v, "deviceId")),
        ("connected", field(v, "connected")),
        ("since", field(v, "since")),
        ("last seen", field(v, "lastSeen")),
        ("disconnect reason", field(v, "disconnectReason")),
    ])
}

fn show_invocation(v: &Value) -> String {
    pairs(&[
        ("request", field(v, "requestId")),
        ("device", field(v, "deviceId")),
        ("method", field(v, "method")),
        ("status", field(v, "status")),
        ("reason", output::reason(v)),
        ("created", field(v, "createdAt")),
        ("completed", field(v, "completedAt")),
    ]) + &output::block("result", v.get("result"))
        + &output::timeline(v)
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

fn show_command(v: &Value) -> String {
    pairs(&[
        ("command", field(v, "commandId")),
        ("arn", field(v, "commandArn")),
        ("name", field(v, "displayName")),
        ("description", field(v, "description")),
        ("deprecated", field(v, "deprecated")),
        ("pending deletion", field(v, "pendingDeletion")),
        ("created", field(v, "createdAt")),
        ("updated", field(v, "lastUpdatedAt")),
    ]) + &output::block("payload", v.get("payload"))
        + &output::block("payload template", v.get("payloadTemplate"))
        + &output::block("mandatory parameters", v.get("mandatoryParameters"))
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
        Ok(client
            .call(Method::GET, &with_query(path, &query), None, None)
            .await?
            .body)
    }
}

impl Commands {
    async fn run(self, client: &Client, out: Out) -> Result<Exit, CliError> {
        match self {
            Commands::Create { body, key } => {
                let answer = client
                    .call(Method::POST, "/commands", Some(&body), key.as_deref())
                    .await?;
                out.show(&answer.body, |v| {
                    format!(
                        "created {}  {}\n",
                        field(v, "commandId"),
                        field(v, "commandArn")
                    )
                });
            }
            Commands::List { query, all } => {
                let page = list(client, "/commands", query, all).await?;
                out.show(&page, |v| {
                    show_list(v, &["COMMAND", "NAME", "DEPRECATED", "CREATED"], |c| {
                        vec![
                            field(c, "commandId"),
                            field(c, "displayName"),
                            field(c, "deprecated"),
                            field(c, "createdAt"),
                        ]
                    })
                });
            }
            Commands::Get(id) => {
                let answer = client
                    .call(Method::GET, &format!("/commands/{id}"), None, None)
                    .await?;
                out.show(&answer.body, show_command);
            }
            Commands::Update { id, body } => {
                let answer = client
                    .call(Method::PATCH, &format!("/commands/{id}"), Some(&body), None)
                    .await?;
                out.show(&answer.body, show_command);
            }
            Commands::Delete(id) => {
                let answer = client
                    .call(Method::DELETE, &format!("/commands/{id}"), None, None)
                    .await?;
                // 204: gone; 202: AWS IoT is still removing it (PENDING_DELETION).
                let body = if answer.status == 204 || answer.body.is_null() {
                    json!({ "commandId": id.as_str(), "status": "DELETED" })
                } else {
                    answer.body
                };
                out.show(&body, |v| {
                    format!("{}  {}\n", field(v, "commandId"), field(v, "status"))
                });
            }
        }
        Ok(Exit::Ok)
    }
}

impl Executions {
    async fn run(self, client: &Client, out: Out) -> Result<Exit, CliError> {
        match self {
            Executions::Get(id) => {
                let answer = client
                    .call(Method::GET, &format!("/executions/{id}"), None, None)
                    .await?;
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

/// One target of a `run`: what was started and where it stands.
struct Tracked {
    target: String,
    execution: Option<String>,
    record: Value,
}

impl Tracked {
    fn status(&self) -> String {
        match self.record.get("error") {
            Some(error) => format!("NOT STARTED ({})", field(error, "code")),
            None => field(&self.record, "status"),
        }
    }

    fn settled(&self) -> bool {
        self.execution.is_none()
            || matches!(
                self.status().as_str(),
                "SUCCEEDED" | "FAILED" | "REJECTED" | "TIMED_OUT"
            )
    }

    fn line(&self) -> String {
        format!(
            "{:<24} {:<38} {:<12} {}",
            self.target,
            self.execution.as_deref().unwrap_or("-"),
            self.status(),
            match self.record.get("error") {
                Some(error) => field(error, "detail"),
                None => output::reason(&self.record),
            }
        )
    }

    fn exit(&self) -> Exit {
        match self.record.get("error") {
            Some(error) => exit_for(
                error.get("status").and_then(Value::as_u64).unwrap_or(500) as u16,
                error.get("code").and_then(Value::as_str),
            ),
            None => exit_of(&self.status()),
        }
    }
}

impl Run {
    async fn run(self, client: &Client, out: Out) -> Result<Exit, CliError> {
        let path = format!("/commands/{}/executions", encode(self.command.as_str()));
        let answer = client
            .call(Method::POST, &path, Some(&self.body), self.key.as_deref())
            .await?;
        let mut tracked: Vec<Tracked> = answer
            .body
            .get("executions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|record| Tracked {
                target: field(&record, "target"),
                execution: record
                    .get("executionId")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                record,
            })
            .collect();
        if let Some(wait) = self.wait {
            follow(client, &mut tracked, wait, out).await?;
        }
        let executions: Vec<Value> = tracked.iter().map(|t| t.record.clone()).collect();
        out.show(&json!({ "executions": executions }), |_| {
            let mut text: String = tracked.iter().map(|t| t.line() + "\n").collect();
            text.push_str(&summary(&tracked));
            text
        });
        // Not waited for: started is done. Waited for: each target's end decides.
        let exit = tracked
            .iter()
            .map(|t| match (self.wait, t.record.get("error")) {
                (None, None) => Exit::Ok,
                _ => t.exit(),
            })
            .max()
            .unwrap_or(Exit::Ok);
        Ok(exit)
    }
}

/// `3 targets: 2 SUCCEEDED, 1 FAILED`.
fn summary(tracked: &[Tracked]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for t in tracked {
        let status = t.status();
        match counts.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => counts.push((status, 1)),
        }
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!("{} target(s): {}\n", tracked.len(), parts.join(", "))
}

/// Polls each started execution until all have ended or `wait` has passed, drawing a line per
/// target on a terminal (stderr) as their statuses change.
async fn follow(
    client: &Client,
    tracked: &mut [Tracked],
    wait: Duration,
    out: Out,
) -> Result<(), CliError> {
    let live =
        !out.quiet && out.format == crate::output::Format::Text && std::io::stderr().is_terminal();
    let until = Instant::now() + wait;
    let mut drawn = 0;
    loop {
        if live {
            draw(tracked, &mut drawn);
        }
        if tracked.iter().all(Tracked::settled) || Instant::now() >= until {
            break;
        }
        tokio::time::sleep(POLL.min(until.saturating_duration_since(Instant::now()))).await;
        for t in tracked.iter_mut().filter(|t| !t.settled()) {
            let Some(id) = &t.execution else { continue };
            match client
                .call(Method::GET, &format!("/executions/{id}"), None, None)
                .await
            {
                Ok(answer) => t.record = answer.body,
                // Recorded a moment after it started: not there yet is not an error.
                Err(CliError::Api {
                    exit: Exit::NotFound,
                    ..
                }) => {}
                Err(err) => return Err(err),
            }
        }
    }
    if live {
        // The final table goes to stdout; clear the progress lines.
        eprint!("\x1b[{drawn}A\x1b[J");
    }
    Ok(())
}

fn draw(tracked: &[Tracked], drawn: &mut usize) {
    let mut text = String::new();
    if *drawn > 0 {
        text.push_str(&format!("\x1b[{drawn}A"));
    }
    for t in tracked {
        text.push_str("\x1b[2K");
        text.push_str(&t.line());
        text.push('\n');
    }
    eprint!("{text}");
    *drawn = tracked.len();
}
