//! `tether run`: start a command on targets and, with `--wait`, follow each to its end.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};
use tether_domain::api::StartExecutionsRequest;
use tether_domain::CommandId;

use super::{command_id, domain, exit_of, idempotency_key};
use crate::api::{encode, Client};
use crate::exit::{exit_for, CliError, Exit};
use crate::input;
use crate::output::{self, field, Out};

/// How long `run --wait` waits between looks at the executions.
pub const POLL: Duration = Duration::from_millis(300);

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

pub struct Run {
    command: CommandId,
    body: Value,
    wait: Option<Duration>,
    key: Option<String>,
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
    pub(super) async fn run(self, client: &Client, out: Out) -> Result<Exit, CliError> {
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
            match client.get(&format!("/executions/{id}")).await {
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
