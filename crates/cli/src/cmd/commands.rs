//! `tether commands create|list|get|update|deprecate|delete`.

use base64::Engine as _;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};
use tether_domain::api::{CommandPayload, CreateCommandRequest, UpdateCommandRequest};
use tether_domain::CommandId;

use super::{command_id, domain, idempotency_key, list, show_list, Paging};
use crate::api::Client;
use crate::exit::{CliError, Exit};
use crate::input;
use crate::output::{self, field, pairs, Out};

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

impl Commands {
    pub(super) async fn run(self, client: &Client, out: Out) -> Result<Exit, CliError> {
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
                let answer = client.get(&format!("/commands/{id}")).await?;
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
