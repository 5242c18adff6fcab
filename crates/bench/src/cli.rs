//! The `tether` command line as a person or a script meets it: the wall time of a whole process,
//! from spawn to exit, beside `curl` and `awscurl` making the same call to the same local API.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{ensure, Context};

use crate::stats::{ms, percentile};
use crate::Env;

const BODY: &str = r#"{"method":"ping"}"#;

/// One way of making the call: a name and a command line.
struct Tool {
    name: &'static str,
    program: String,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

/// The p50 and p90 (ms) of `runs` whole processes of each tool; a tool that is not there
/// (awscurl outside the venv) is left out.
pub async fn startup(
    env: &Env,
    cli: &Path,
    root: &Path,
    runs: usize,
) -> anyhow::Result<Vec<(&'static str, f64, f64)>> {
    let mut figures = Vec::new();
    for tool in &tools(env, cli, root) {
        figures.push(time(tool, runs).await?);
    }
    Ok(figures)
}

/// The tether CLI and, for the same call, curl and (when installed) awscurl.
fn tools(env: &Env, cli: &Path, root: &Path) -> Vec<Tool> {
    let url = format!("{}/devices/dev-1/invoke", env.api);
    let tether = cli.display().to_string();
    let own = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let local_keys = vec![
        ("AWS_ACCESS_KEY_ID", "local".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "local".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    let mut tools = vec![
        Tool {
            name: "tether --help",
            program: tether.clone(),
            args: own(&["--help"]),
            env: vec![],
        },
        Tool {
            name: "tether invoke (unsigned)",
            program: tether.clone(),
            args: own(&["--api", &env.api, "-q", "invoke", "dev-1", "ping"]),
            env: vec![],
        },
        Tool {
            name: "tether invoke --sign (SigV4)",
            program: tether.clone(),
            args: own(&["--api", &env.api, "--sign", "-q", "invoke", "dev-1", "ping"]),
            env: local_keys.clone(),
        },
        Tool {
            name: "curl (unsigned)",
            program: "curl".into(),
            args: own(&[
                "-sf",
                "-o",
                "/dev/null",
                "-X",
                "POST",
                &url,
                "-H",
                "content-type: application/json",
                "-d",
                BODY,
            ]),
            env: vec![],
        },
    ];
    let awscurl = root.join(".venv/bin/awscurl");
    if awscurl.exists() {
        tools.push(Tool {
            name: "awscurl (SigV4)",
            program: awscurl.display().to_string(),
            args: own(&[
                "--service",
                "execute-api",
                "--region",
                "us-east-1",
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "-d",
                BODY,
                &url,
            ]),
            env: local_keys,
        });
    }
    tools
}

/// Runs one tool `runs` times: its name and whole-process p50 and p90 in ms.
async fn time(tool: &Tool, runs: usize) -> anyhow::Result<(&'static str, f64, f64)> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let status = tokio::process::Command::new(&tool.program)
            .args(&tool.args)
            .envs(tool.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .with_context(|| format!("running {}", tool.name))?;
        times.push(ms(started.elapsed()));
        ensure!(status.success(), "{} failed: {status}", tool.name);
    }
    let p = |q| percentile(&times, q).unwrap_or(f64::NAN);
    Ok((tool.name, p(50.0), p(90.0)))
}
