//! `tether jobs create|list|get|executions|cancel|delete`: AWS IoT Jobs, persistent work for
//! devices that may be offline.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};
use tether_domain::api::{
    AbortRule, CancelJobRequest, CreateJobRequest, FailureType, RetryRule, Rollout,
};
use tether_domain::jobs::JobExecutionStatus;
use tether_domain::JobId;

use super::{device_id, domain, idempotency_key, list, show_list, Paging};
use crate::api::Client;
use crate::exit::{CliError, Exit};
use crate::input;
use crate::output::{self, field, pairs, Out};

#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// Create a job: a JSON document for devices that run it when they connect.
    #[command(
        after_help = "Examples:\n  tether jobs create --target pump-1 --target pump-2 --document '{\"operation\": \"upgrade\", \"version\": \"1.2\"}'\n  tether jobs create fw-7 --target pump-1 --document @job.json --rate 10 --timeout 30m --abort FAILED:50:5 --retry TIMED_OUT:2"
    )]
    Create(CreateArgs),
    /// List the jobs.
    #[command(after_help = "Examples:\n  tether jobs list\n  tether jobs list --all -o json")]
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one job: status, targets, executions per status.
    #[command(after_help = "Example:\n  tether jobs get fw-7")]
    Get { job: String },
    /// List a job's executions (or, with --device, a device's), with their histories.
    #[command(
        after_help = "Examples:\n  tether jobs executions fw-7\n  tether jobs executions fw-7 --status FAILED\n  tether jobs executions --device pump-1"
    )]
    Executions {
        /// The job.
        #[arg(required_unless_present = "device", conflicts_with = "device")]
        job: Option<String>,
        /// A device's job executions instead, newest first.
        #[arg(long)]
        device: Option<String>,
        /// Only this status (QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED, REMOVED).
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Cancel a job: queued executions stop; --force stops running ones too.
    #[command(
        after_help = "Examples:\n  tether jobs cancel fw-7\n  tether jobs cancel fw-7 --force --comment 'wrong image'"
    )]
    Cancel {
        job: String,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Delete a job and its executions (--force for a job still in progress).
    #[command(after_help = "Example:\n  tether jobs delete fw-7 --force")]
    Delete {
        job: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The job's id (else one is made up, or derived from --idempotency-key).
    job: Option<String>,
    /// A device to run the job (repeat; 1-100).
    #[arg(long = "target", value_name = "DEVICE", required = true)]
    targets: Vec<String>,
    /// The job document, a JSON object: JSON, @FILE, or -.
    #[arg(long, value_name = "JSON|@FILE|-")]
    document: String,
    #[arg(long)]
    description: Option<String>,
    /// Executions created per minute at most (1-1000).
    #[arg(long, value_name = "PER_MINUTE")]
    rate: Option<u32>,
    /// How long an execution may stay IN_PROGRESS, in whole minutes (e.g. 30m, 2h).
    #[arg(long, value_parser = input::duration)]
    timeout: Option<std::time::Duration>,
    /// Cancel the job when TYPE failures reach PERCENT of at least MIN finished executions
    /// (TYPE: FAILED, REJECTED, TIMED_OUT, ALL).
    #[arg(long, value_name = "TYPE:PERCENT:MIN")]
    abort: Vec<String>,
    /// Queue an execution that failed this way again, at most N times (TYPE: FAILED, TIMED_OUT, ALL).
    #[arg(long, value_name = "TYPE:N")]
    retry: Vec<String>,
    /// A retry with the same key creates nothing new.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
}

fn failure_type(text: &str) -> Result<FailureType, CliError> {
    serde_json::from_value(json!(text)).map_err(|_| {
        CliError::bad_input(format!(
            "{text:?} is not one of FAILED, REJECTED, TIMED_OUT, ALL"
        ))
    })
}

fn job_id(text: &str) -> Result<JobId, CliError> {
    JobId::parse(text).map_err(|e| CliError::bad_input(e.to_string()))
}

impl CreateArgs {
    fn check(&self) -> Result<Jobs, CliError> {
        let abort = self
            .abort
            .iter()
            .map(|rule| {
                let parts: Vec<&str> = rule.split(':').collect();
                let [kind, percent, min] = parts.as_slice() else {
                    return Err(CliError::bad_input(format!(
                        "--abort {rule:?} is not TYPE:PERCENT:MIN"
                    )));
                };
                Ok(AbortRule {
                    failure_type: failure_type(kind)?,
                    threshold_percentage: percent.parse().map_err(|_| {
                        CliError::bad_input(format!(
                            "--abort {rule:?}: {percent:?} is not a number"
                        ))
                    })?,
                    min_executed: min.parse().map_err(|_| {
                        CliError::bad_input(format!("--abort {rule:?}: {min:?} is not a count"))
                    })?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let retry = self
            .retry
            .iter()
            .map(|rule| {
                let (kind, n) = rule.split_once(':').ok_or_else(|| {
                    CliError::bad_input(format!("--retry {rule:?} is not TYPE:N"))
                })?;
                Ok(RetryRule {
                    failure_type: failure_type(kind)?,
                    retries: n.parse().map_err(|_| {
                        CliError::bad_input(format!("--retry {rule:?}: {n:?} is not a count"))
                    })?,
                })
            })
            .collect::<Result<Vec<_>, CliError>>()?;
        let timeout_minutes = match self.timeout {
            None => None,
            Some(t) if t.as_secs() % 60 == 0 && t.as_secs() > 0 => Some((t.as_secs() / 60) as u32),
            Some(_) => {
                return Err(CliError::bad_input(
                    "--timeout must be whole minutes (e.g. 30m)",
                ))
            }
        };
        let request = CreateJobRequest {
            job_id: self.job.clone(),
            targets: self.targets.clone(),
            document: input::json_argument("--document", &self.document)?,
            description: self.description.clone(),
            rollout: self
                .rate
                .map(|maximum_per_minute| Rollout { maximum_per_minute }),
            abort: (!abort.is_empty()).then_some(abort),
            timeout_minutes,
            retry: (!retry.is_empty()).then_some(retry),
        };
        request.clone().validate().map_err(domain)?;
        Ok(Jobs::Create {
            body: serde_json::to_value(&request).map_err(anyhow::Error::from)?,
            key: idempotency_key(&self.idempotency_key)?,
        })
    }
}

pub enum Jobs {
    Create {
        body: Value,
        key: Option<String>,
    },
    List {
        query: Vec<(String, String)>,
        all: bool,
    },
    Get(JobId),
    Executions {
        path: String,
        query: Vec<(String, String)>,
        all: bool,
    },
    Cancel {
        id: JobId,
        body: Value,
    },
    Delete {
        id: JobId,
        force: bool,
    },
}

impl JobsCmd {
    pub fn check(&self) -> Result<Jobs, CliError> {
        Ok(match self {
            JobsCmd::Create(args) => args.check()?,
            JobsCmd::List { paging } => {
                let (query, all) = paging.check()?;
                Jobs::List { query, all }
            }
            JobsCmd::Get { job } => Jobs::Get(job_id(job)?),
            JobsCmd::Executions {
                job,
                device,
                status,
                paging,
            } => {
                let path = match (job, device) {
                    (Some(job), None) => format!("/jobs/{}/executions", job_id(job)?),
                    (None, Some(device)) => format!("/devices/{}/jobs", device_id(device)?),
                    _ => return Err(CliError::bad_input("give a job or --device")),
                };
                let (mut query, all) = paging.check()?;
                if let Some(status) = status {
                    JobExecutionStatus::parse(status).ok_or_else(|| {
                        CliError::bad_input(format!(
                            "--status {status:?} is not one of QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED, REMOVED"
                        ))
                    })?;
                    query.push(("status".into(), status.clone()));
                }
                Jobs::Executions { path, query, all }
            }
            JobsCmd::Cancel {
                job,
                force,
                comment,
            } => {
                let request = CancelJobRequest {
                    comment: comment.clone(),
                    force: *force,
                }
                .validate()
                .map_err(domain)?;
                Jobs::Cancel {
                    id: job_id(job)?,
                    body: serde_json::to_value(&request).map_err(anyhow::Error::from)?,
                }
            }
            JobsCmd::Delete { job, force } => Jobs::Delete {
                id: job_id(job)?,
                force: *force,
            },
        })
    }
}

fn show_job(v: &Value) -> String {
    let counts = v
        .get("counts")
        .and_then(Value::as_object)
        .map(|c| {
            c.iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(status, n)| format!("{status} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let targets = v
        .get("targets")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    pairs(&[
        ("job", field(v, "jobId")),
        ("status", field(v, "status")),
        ("description", field(v, "description")),
        ("targets", targets),
        ("executions", counts),
        ("reason", field(v, "reasonCode")),
        ("comment", field(v, "comment")),
        ("created", field(v, "createdAt")),
        ("completed", field(v, "completedAt")),
    ])
}

fn show_executions(v: &Value) -> String {
    let mut text = show_list(
        v,
        &["JOB", "DEVICE", "STATUS", "#", "UPDATED", "DETAILS"],
        |e| {
            vec![
                field(e, "jobId"),
                field(e, "deviceId"),
                field(e, "status"),
                field(e, "executionNumber"),
                field(e, "updatedAt"),
                e.get("statusDetails")
                    .map(Value::to_string)
                    .unwrap_or_default(),
            ]
        },
    );
    for item in v
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if item
            .get("timeline")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty())
        {
            text.push_str(&format!("\n{}:\n", field(item, "deviceId")));
            text.push_str(&output::timeline(item));
        }
    }
    text
}

impl Jobs {
    pub(super) async fn run(self, client: &Client, out: Out) -> Result<Exit, CliError> {
        match self {
            Jobs::Create { body, key } => {
                let answer = client
                    .call(Method::POST, "/jobs", Some(&body), key.as_deref())
                    .await?;
                out.show(&answer.body, |v| {
                    format!("created {}  {}\n", field(v, "jobId"), field(v, "jobArn"))
                });
            }
            Jobs::List { query, all } => {
                let page = list(client, "/jobs", query, all).await?;
                out.show(&page, |v| {
                    show_list(v, &["JOB", "STATUS", "CREATED", "COMPLETED"], |j| {
                        vec![
                            field(j, "jobId"),
                            field(j, "status"),
                            field(j, "createdAt"),
                            field(j, "completedAt"),
                        ]
                    })
                });
            }
            Jobs::Get(id) => {
                let answer = client.get(&format!("/jobs/{id}")).await?;
                out.show(&answer.body, show_job);
            }
            Jobs::Executions { path, query, all } => {
                let page = list(client, &path, query, all).await?;
                out.show(&page, show_executions);
            }
            Jobs::Cancel { id, body } => {
                let answer = client
                    .call(
                        Method::POST,
                        &format!("/jobs/{id}/cancel"),
                        Some(&body),
                        None,
                    )
                    .await?;
                out.show(&answer.body, show_job);
            }
            Jobs::Delete { id, force } => {
                let path = if force {
                    format!("/jobs/{id}?force=true")
                } else {
                    format!("/jobs/{id}")
                };
                client.call(Method::DELETE, &path, None, None).await?;
                out.show(
                    &json!({ "jobId": id.as_str(), "status": "DELETION_IN_PROGRESS" }),
                    |v| format!("{}  {}\n", field(v, "jobId"), field(v, "status")),
                );
            }
        }
        Ok(Exit::Ok)
    }
}
