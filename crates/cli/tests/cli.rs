//! The `tether` binary against the local stack: every subcommand in text and JSON, exit codes,
//! payloads from a file and from stdin, `run --wait` over several devices, bad input refused
//! before anything is sent, and SigV4 through the local gateway's IAM check.
//!
//! One stack for the suite; each scenario is a test of its own (`cargo test -p tether-cli
//! --test cli <name>`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

#[path = "../../stack/tests/common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{ensure, Context};
use aws_credential_types::Credentials;
use common::Api;
use serde_json::Value;
use tether_cli::api::Signer;
use tether_stack::gateway::Gateway;
use tether_stack::sigv4::Verifier;
use tether_stack::Stack;
use tokio::io::AsyncWriteExt;

/// What one `tether` process did.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| format!("not JSON: {}", self.stdout))
    }

    fn expect(&self, code: i32, what: &str) -> anyhow::Result<&Self> {
        ensure!(
            self.code == code,
            "{what}: exit {} (wanted {code})\nstdout: {}\nstderr: {}",
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }
}

/// Runs `tether args…` against `api` from an empty directory (no stack.env to find), with
/// `stdin` and extra environment.
async fn tether_with(
    api: &str,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> anyhow::Result<Ran> {
    let dir = tempfile::tempdir()?;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tether"));
    command
        .args(args)
        .current_dir(dir.path())
        .env("TETHER_API", api)
        .env_remove("TETHER_SIGN")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("no-credentials"),
        )
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().context("starting tether")?;
    let mut input = child.stdin.take().context("stdin")?;
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await?;
    }
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .context("tether did not finish in 90 s")??;
    Ok(Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

async fn tether(api: &Api, args: &[&str]) -> anyhow::Result<Ran> {
    tether_with(&api.base, args, None, &[]).await
}

fn received_by(stack: &Stack, method: &str) -> usize {
    stack
        .fleet()
        .unwrap()
        .received()
        .iter()
        .filter(|r| r.method.as_deref() == Some(method))
        .count()
}

async fn invoke_prints_the_answer_as_text_and_as_the_apis_json(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let text = tether(
        api,
        &[
            "invoke",
            "dev-1",
            "setLight",
            "--payload",
            r#"{"on": true}"#,
            "--timeout",
            "5s",
        ],
    )
    .await?;
    text.expect(0, "text")?;
    ensure!(
        text.stdout.starts_with("SUCCEEDED  dev-1 setLight"),
        "{}",
        text.stdout
    );
    ensure!(
        text.stdout.contains("\"on\": true"),
        "the result is shown: {}",
        text.stdout
    );

    let json = tether(
        api,
        &[
            "-o",
            "json",
            "invoke",
            "dev-1",
            "setLight",
            "--payload",
            r#"{"on": false}"#,
        ],
    )
    .await?;
    let body = json.expect(0, "json")?.json()?;
    ensure!(
        body["status"] == "SUCCEEDED"
            && body["deviceId"] == "dev-1"
            && body["result"]["on"] == false,
        "{body}"
    );
    ensure!(
        body["requestId"].is_string() && body["elapsedMs"].is_u64(),
        "{body}"
    );

    let quiet = tether(api, &["--quiet", "invoke", "dev-1", "ping"]).await?;
    ensure!(
        quiet.expect(0, "quiet")?.stdout.is_empty(),
        "quiet prints nothing: {}",
        quiet.stdout
    );
    Ok(())
}

async fn payloads_come_from_a_file_and_from_stdin(api: &Api, _: &Stack) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("payload.json");
    std::fs::write(&file, r#"{"level": 3}"#)?;
    let at_file = format!("@{}", file.display());
    let from_file = tether(
        api,
        &[
            "-o",
            "json",
            "invoke",
            "dev-2",
            "dim",
            "--payload",
            &at_file,
        ],
    )
    .await?;
    let body = from_file.expect(0, "from a file")?.json()?;
    ensure!(body["result"]["level"] == 3, "{body}");

    let from_stdin = tether_with(
        &api.base,
        &["-o", "json", "invoke", "dev-2", "dim", "--payload", "-"],
        Some(r#"{"level": 4}"#),
        &[],
    )
    .await?;
    let body = from_stdin.expect(0, "from stdin")?.json()?;
    ensure!(body["result"]["level"] == 4, "{body}");
    Ok(())
}

async fn each_outcome_has_its_exit_code_and_one_error_line(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let failed = tether(api, &["invoke", "dev-1", "fail"]).await?;
    failed.expect(3, "a device that fails")?;
    ensure!(
        failed.stdout.starts_with("FAILED") && failed.stdout.contains("BULB_BROKEN"),
        "{}",
        failed.stdout
    );
    let rejected = tether(api, &["invoke", "dev-1", "reject"]).await?;
    rejected.expect(3, "a device that rejects")?;

    let silent = tether(api, &["invoke", "dev-2", "silent", "--timeout", "300ms"]).await?;
    silent.expect(4, "a device that never answers")?;
    ensure!(
        silent.stderr.lines().count() == 1,
        "one line: {}",
        silent.stderr
    );
    ensure!(
        silent.stderr.contains("(DEVICE_TIMEOUT)"),
        "{}",
        silent.stderr
    );
    let request = silent
        .stderr
        .trim()
        .rsplit("; request ")
        .next()
        .context("the timeout names its request")?
        .to_owned();

    let json_timeout = tether(
        api,
        &[
            "-o",
            "json",
            "invoke",
            "dev-2",
            "silent",
            "--timeout",
            "200ms",
        ],
    )
    .await?;
    let problem = json_timeout.expect(4, "a timeout in JSON")?.json()?;
    ensure!(
        problem["code"] == "DEVICE_TIMEOUT" && problem["status"] == 504,
        "{problem}"
    );

    let ghost = tether(api, &["invoke", "ghost-1", "ping"]).await?;
    ghost.expect(5, "a device that is not connected")?;
    ensure!(
        ghost.stderr.contains("(DEVICE_NOT_CONNECTED)"),
        "{}",
        ghost.stderr
    );

    let invocation = tether(api, &["invocation", &request]).await?;
    invocation.expect(0, "the invocation")?;
    ensure!(
        invocation.stdout.contains("TIMED_OUT") && invocation.stdout.contains("AT"),
        "the record and its timeline: {}",
        invocation.stdout
    );
    let unknown = tether(api, &["invocation", "no-such-request"]).await?;
    unknown.expect(6, "an unknown invocation")?;

    let device = tether(api, &["device", "dev-1"]).await?;
    ensure!(
        device.expect(0, "device")?.stdout.contains("connected"),
        "{}",
        device.stdout
    );
    let device_json = tether(api, &["-o", "json", "device", "dev-1"])
        .await?
        .json()?;
    ensure!(device_json["connected"] == true, "{device_json}");
    Ok(())
}

async fn bad_input_is_refused_before_anything_is_sent(
    _: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    // Nothing listens here: had anything been sent, the exit would be 7 (unreachable), not 2.
    let nowhere = "http://127.0.0.1:9";
    let cases: &[&[&str]] = &[
        &["invoke", "dev 1", "neverSent"],
        &["invoke", "dev/1", "neverSent"],
        &["invoke", "dev-1", "never.sent"],
        &["invoke", "dev-1", "neverSent", "--timeout", "5"],
        &["invoke", "dev-1", "neverSent", "--timeout", "5h"],
        &["invoke", "dev-1", "neverSent", "--timeout", "26s"],
        &["invoke", "dev-1", "neverSent", "--payload", "{nope"],
        &[
            "invoke",
            "dev-1",
            "neverSent",
            "--payload",
            "@/no/such/file",
        ],
        &["invoke", "dev-1", "neverSent", "--idempotency-key", "a b"],
        &["frobnicate"],
        &["run", "cmd-1", "--target", "dev-1", "--param", "n:I=1.5"],
        &["run", "cmd-1", "--target", "dev-1", "--target", "dev-1"],
        &["run", "cmd-1", "--target", "dev-1", "--timeout", "1500ms"],
        &["commands", "create", "bad id"],
        &[
            "commands",
            "create",
            "c1",
            "--payload",
            "{}",
            "--template",
            "{}",
        ],
        &["commands", "update", "c1"],
        &[
            "executions",
            "list",
            "--device",
            "dev-1",
            "--status",
            "DONE",
        ],
        &["executions", "list", "--device", "dev-1", "--limit", "0"],
        &["jobs", "create", "--target", "dev-1", "--document", "[1]"],
        &[
            "jobs",
            "create",
            "--target",
            "dev-1",
            "--target",
            "dev-1",
            "--document",
            "{}",
        ],
        &[
            "jobs",
            "create",
            "--target",
            "dev-1",
            "--document",
            "{}",
            "--rate",
            "0",
        ],
        &[
            "jobs",
            "create",
            "--target",
            "dev-1",
            "--document",
            "{}",
            "--timeout",
            "90s",
        ],
        &[
            "jobs",
            "create",
            "--target",
            "dev-1",
            "--document",
            "{}",
            "--abort",
            "FAILED:50",
        ],
        &[
            "jobs",
            "create",
            "--target",
            "dev-1",
            "--document",
            "{}",
            "--retry",
            "REJECTED:1",
        ],
        &["jobs", "get", "bad id"],
        &["jobs", "executions", "fw-1", "--status", "DONE"],
    ];
    for args in cases {
        let ran = tether_with(nowhere, args, None, &[]).await?;
        ran.expect(2, &format!("{args:?}"))?;
        ensure!(
            ran.stderr.lines().count() == 1 && ran.stderr.starts_with("tether: "),
            "{args:?}: one line on stderr, got {:?}",
            ran.stderr
        );
        ensure!(
            ran.stdout.is_empty(),
            "{args:?}: nothing on stdout: {}",
            ran.stdout
        );
    }
    ensure!(
        received_by(stack, "neverSent") == 0,
        "no device was sent anything"
    );
    Ok(())
}

async fn jobs_are_created_followed_cancelled_and_deleted(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let id = format!("cli-job-{}", std::process::id());
    let created = tether(
        api,
        &[
            "jobs",
            "create",
            &id,
            "--target",
            "dev-1",
            "--target",
            "dev-2",
            "--document",
            r#"{"operation": "upgrade"}"#,
            "--timeout",
            "30m",
            "--retry",
            "TIMED_OUT:1",
            "-o",
            "json",
        ],
    )
    .await?;
    created.expect(0, "jobs create")?;
    ensure!(
        created.json()?["jobId"] == id.as_str(),
        "{}",
        created.stdout
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = tether(api, &["jobs", "get", &id]).await?;
        got.expect(0, "jobs get")?;
        if got.stdout.contains("COMPLETED") {
            ensure!(got.stdout.contains("SUCCEEDED 2"), "{}", got.stdout);
            break;
        }
        ensure!(std::time::Instant::now() < deadline, "{}", got.stdout);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let executions = tether(api, &["jobs", "executions", &id, "-o", "json"]).await?;
    executions.expect(0, "jobs executions")?;
    let items = executions.json()?["items"].clone();
    ensure!(
        items
            .as_array()
            .is_some_and(|i| i.len() == 2 && i.iter().all(|e| e["status"] == "SUCCEEDED")),
        "{items}"
    );
    let mine = tether(api, &["jobs", "executions", "--device", "dev-2"]).await?;
    mine.expect(0, "jobs executions --device")?;
    ensure!(mine.stdout.contains(&id), "{}", mine.stdout);
    let listed = tether(api, &["jobs", "list", "--all"]).await?;
    ensure!(
        listed.code == 0 && listed.stdout.contains(&id),
        "{}",
        listed.stdout
    );
    // A finished job cannot be cancelled (9, conflict); it can be deleted; then it is gone (6).
    tether(api, &["jobs", "cancel", &id])
        .await?
        .expect(9, "cancel a finished job")?;
    tether(api, &["jobs", "delete", &id])
        .await?
        .expect(0, "delete")?;
    tether(api, &["jobs", "get", &id])
        .await?
        .expect(6, "get a deleted job")?;
    Ok(())
}

async fn commands_are_created_listed_updated_deprecated_and_deleted(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let created = tether(
        api,
        &[
            "-o",
            "json",
            "commands",
            "create",
            "cli-blink",
            "--payload",
            r#"{"blink": 2}"#,
            "--display-name",
            "Blink",
        ],
    )
    .await?;
    let body = created.expect(0, "create")?.json()?;
    ensure!(body["commandId"] == "cli-blink", "{body}");
    let again = tether(api, &["commands", "create", "cli-blink", "--payload", "{}"]).await?;
    again.expect(9, "creating it twice is a conflict")?;

    let got = tether(api, &["commands", "get", "cli-blink"]).await?;
    ensure!(
        got.expect(0, "get")?.stdout.contains("cli-blink") && got.stdout.contains("Blink"),
        "{}",
        got.stdout
    );
    let listed = tether(api, &["-o", "json", "commands", "list", "--all"])
        .await?
        .json()?;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter_map(|c| c["commandId"].as_str())
        .collect();
    ensure!(ids.contains(&"cli-blink"), "{listed}");
    let table = tether(api, &["commands", "list", "--limit", "100"]).await?;
    ensure!(
        table.expect(0, "list")?.stdout.starts_with("COMMAND"),
        "{}",
        table.stdout
    );

    let updated = tether(
        api,
        &[
            "-o",
            "json",
            "commands",
            "update",
            "cli-blink",
            "--description",
            "blinks twice",
        ],
    )
    .await?;
    ensure!(
        updated.expect(0, "update")?.json()?["description"] == "blinks twice",
        "{}",
        updated.stdout
    );

    tether(api, &["commands", "deprecate", "cli-blink"])
        .await?
        .expect(0, "deprecate")?;
    let refused = tether(api, &["run", "cli-blink", "--target", "dev-1"]).await?;
    refused.expect(9, "running a deprecated command")?;
    ensure!(
        refused.stderr.contains("(COMMAND_DEPRECATED)"),
        "{}",
        refused.stderr
    );
    tether(api, &["commands", "deprecate", "cli-blink", "--undo"])
        .await?
        .expect(0, "undo")?;

    tether(api, &["commands", "delete", "cli-blink"])
        .await?
        .expect(0, "delete")?;
    tether(api, &["commands", "get", "no-such-command"])
        .await?
        .expect(6, "an unknown command")?;
    Ok(())
}

async fn run_follows_each_target_to_its_end(api: &Api, _: &Stack) -> anyhow::Result<()> {
    tether(
        api,
        &[
            "commands",
            "create",
            "cli-run",
            "--payload",
            r#"{"method": "ok"}"#,
        ],
    )
    .await?
    .expect(0, "create")?;
    tether(
        api,
        &[
            "commands",
            "create",
            "cli-run-fail",
            "--payload",
            r#"{"method": "fail"}"#,
        ],
    )
    .await?
    .expect(0, "create")?;

    let waited = tether(
        api,
        &[
            "-o", "json", "run", "cli-run", "--target", "dev-1", "--target", "dev-2", "--target",
            "dev-3", "--wait", "20s",
        ],
    )
    .await?;
    let body = waited.expect(0, "run --wait")?.json()?;
    let executions = body["executions"].as_array().context("executions")?;
    ensure!(executions.len() == 3, "{body}");
    ensure!(
        executions.iter().all(|e| e["status"] == "SUCCEEDED"),
        "{body}"
    );
    let id = executions[0]["executionId"]
        .as_str()
        .context("an execution id")?
        .to_owned();

    let failing = tether(
        api,
        &[
            "run",
            "cli-run-fail",
            "--target",
            "dev-1",
            "--target",
            "dev-2",
            "--wait",
            "20s",
        ],
    )
    .await?;
    failing.expect(3, "run --wait where devices fail")?;
    ensure!(
        failing.stdout.contains("2 target(s): 2 FAILED"),
        "{}",
        failing.stdout
    );

    let started = tether(
        api,
        &["run", "cli-run", "--target", "dev-4", "--param", "note=hi"],
    )
    .await?;
    ensure!(
        started
            .expect(0, "run without waiting")?
            .stdout
            .contains("dev-4"),
        "{}",
        started.stdout
    );

    let one = tether(api, &["executions", "get", &id]).await?;
    ensure!(
        one.expect(0, "executions get")?
            .stdout
            .contains("SUCCEEDED")
            && one.stdout.contains("AT"),
        "{}",
        one.stdout
    );
    let by_device = tether(
        api,
        &[
            "-o",
            "json",
            "executions",
            "list",
            "--device",
            "dev-1",
            "--status",
            "SUCCEEDED",
            "--all",
        ],
    )
    .await?
    .json()?;
    let found = by_device["items"]
        .as_array()
        .context("items")?
        .iter()
        .any(|e| e["executionId"] == id.as_str());
    ensure!(found, "the device's list has the execution: {by_device}");
    let by_command = tether(
        api,
        &[
            "-o",
            "json",
            "executions",
            "list",
            "--command",
            "cli-run",
            "--limit",
            "1",
        ],
    )
    .await?
    .json()?;
    ensure!(
        by_command["items"].as_array().map(Vec::len) == Some(1)
            && by_command["nextToken"].is_string(),
        "one page of one, and a token for the rest: {by_command}"
    );
    Ok(())
}

async fn completions_are_printed_for_each_shell(api: &Api, _: &Stack) -> anyhow::Result<()> {
    for shell in ["bash", "zsh", "fish"] {
        let ran = tether(api, &["completions", shell]).await?;
        ensure!(
            ran.expect(0, shell)?.stdout.contains("tether"),
            "{shell}: {}",
            ran.stdout
        );
    }
    let help = tether(api, &["invoke", "--help"]).await?;
    ensure!(
        help.expect(0, "help")?.stdout.contains("Examples:"),
        "{}",
        help.stdout
    );
    Ok(())
}

async fn signed_requests_pass_the_local_iam_check_and_others_are_refused(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let front = Gateway::start(0, &api.base).await?;
    front.require_sigv4(Verifier::local("local", "local", "us-east-1"));
    front.open();
    let url = front.url();
    let creds = |id: &'static str, secret: &'static str| {
        [
            ("AWS_ACCESS_KEY_ID", id),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_REGION", "us-east-1"),
        ]
    };
    let call = [
        "--sign",
        "invoke",
        "dev-1",
        "ping",
        "--payload",
        r#"{"signed": true}"#,
    ];
    let signed = tether_with(&url, &call, None, &creds("local", "local")).await?;
    signed.expect(0, "a signed call")?;

    let unsigned = tether_with(
        &url,
        &["invoke", "dev-1", "ping"],
        None,
        &creds("local", "local"),
    )
    .await?;
    unsigned.expect(8, "unsigned")?;
    ensure!(
        unsigned.stderr.contains("Missing Authentication Token"),
        "{}",
        unsigned.stderr
    );
    let wrong_secret = tether_with(&url, &call, None, &creds("local", "not-local")).await?;
    wrong_secret.expect(8, "a wrong secret")?;
    ensure!(
        wrong_secret.stderr.contains("signature we calculated"),
        "{}",
        wrong_secret.stderr
    );
    let wrong_key = tether_with(&url, &call, None, &creds("someone", "local")).await?;
    wrong_key.expect(8, "an unknown key")?;
    let mut other_region = call.to_vec();
    other_region.extend(["--region", "eu-west-1"]);
    tether_with(&url, &other_region, None, &creds("local", "local"))
        .await?
        .expect(8, "another region")?;

    // A body changed after signing, and a signature from 20 minutes ago.
    let signer = Signer::with_credentials(
        "us-east-1",
        Credentials::new("local", "local", None, None, "test"),
    );
    let target = format!("{url}/devices/dev-1/invoke");
    let headers = [("content-type", "application/json")];
    let http = reqwest::Client::new();
    let send = |signed: Vec<(String, String)>, body: &'static str| {
        let mut request = http
            .post(&target)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in signed {
            request = request.header(name, value);
        }
        request.send()
    };
    let good = br#"{"method":"ping"}"#;
    let now = SystemTime::now();
    let signed = signer
        .headers("POST", &target, &headers, good, now)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ok = send(signed.clone(), r#"{"method":"ping"}"#).await?;
    ensure!(
        ok.status() == 200,
        "the signed request itself passes: {}",
        ok.status()
    );
    let tampered = send(signed, r#"{"method":"pong"}"#).await?;
    ensure!(
        tampered.status() == 403,
        "a tampered body: {}",
        tampered.status()
    );
    let old = signer
        .headers(
            "POST",
            &target,
            &headers,
            good,
            now - Duration::from_secs(20 * 60),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let expired = send(old, r#"{"method":"ping"}"#).await?;
    ensure!(
        expired.status() == 403,
        "an expired date: {}",
        expired.status()
    );
    let text = expired.text().await?;
    ensure!(text.contains("Signature expired"), "{text}");
    front.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    common::run_scenarios(
        "cli",
        vec![
            scenario!(invoke_prints_the_answer_as_text_and_as_the_apis_json),
            scenario!(payloads_come_from_a_file_and_from_stdin),
            scenario!(each_outcome_has_its_exit_code_and_one_error_line),
            scenario!(bad_input_is_refused_before_anything_is_sent),
            scenario!(commands_are_created_listed_updated_deprecated_and_deleted),
            scenario!(jobs_are_created_followed_cancelled_and_deleted),
            scenario!(run_follows_each_target_to_its_end),
            scenario!(completions_are_printed_for_each_shell),
            scenario!(signed_requests_pass_the_local_iam_check_and_others_are_refused),
        ],
        None,
    )
}
