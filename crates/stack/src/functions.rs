//! The Lambda functions, served by `cargo lambda watch` (from the venv) on the same paths as the
//! deployed API (the router in the workspace `Cargo.toml`), and through the Lambda Invoke API
//! that `local-iot`'s rules deliver to.
//!
//! `cargo lambda watch` runs each function with `cargo run --bin NAME`, which resolves features
//! for that package alone; [`prebuild`] builds each binary the same way first, so the first
//! request does not wait for a compile. The watcher runs in a process group of its own, led by
//! a guard shell: [`Functions::stop`] ends the whole group (the watcher and the function
//! processes), and the guard ends it too when the process that started it is gone.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The function binaries (`redrive` consumes the dead-letter queue).
pub const FUNCTIONS: [&str; 6] = ["invoke", "ingest", "redrive", "status", "commands", "jobs"];

/// Why the functions could not be started.
#[derive(Debug, thiserror::Error)]
pub enum FunctionsError {
    #[error("{0} is missing: run `make venv` (cargo-lambda comes from the project's venv)")]
    NoCargoLambda(PathBuf),
    #[error("cannot run {what}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`cargo build --bin {0}` failed")]
    Build(String),
    #[error("the functions were not ready within {timeout:?}: {last}")]
    NotReady { timeout: Duration, last: String },
}

/// How `cargo lambda watch` builds and runs the functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    /// Watch the sources and rebuild and restart a function when they change.
    pub reload: bool,
    /// Build with the release profile (what deploys) instead of the dev profile.
    pub release: bool,
    /// Instances of each function that may run at once. Lambda gives every concurrent request
    /// an instance of its own; with one, concurrent calls would queue behind each other.
    pub concurrency: usize,
}

/// Removes what `cargo run` / `cargo test` set for the process that started the stack from a
/// nested cargo's environment. Build scripts (ring's, among others) rerun when
/// `CARGO_MANIFEST_DIR` changes, and everything above them (rustls, hyper, the AWS SDK) is
/// rebuilt after them: left in, every `make run` and `make test` would rebuild the others'
/// artefacts, back and forth.
pub fn clear_cargo_run_env(command: &mut Command) {
    const SET_BY_CARGO_RUN: [&str; 8] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_RUSTC_CURRENT_DIR",
        "CARGO_TARGET_TMPDIR",
        "OUT_DIR",
    ];
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if SET_BY_CARGO_RUN.contains(&name)
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
        {
            command.env_remove(name);
        }
    }
}

/// Builds each function binary as `cargo lambda watch` will run it. Dropping the future (the
/// stack stopped while it starts) kills the build.
pub async fn prebuild(root: &Path, release: bool) -> Result<(), FunctionsError> {
    for bin in FUNCTIONS {
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command
            .current_dir(root)
            .args(["build", "--quiet", "--bin", bin]);
        clear_cargo_run_env(&mut command);
        if release {
            command.arg("--release");
        }
        let status = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .status()
            .await
            .map_err(|source| FunctionsError::Spawn {
                what: format!("cargo build --bin {bin}"),
                source,
            })?;
        if !status.success() {
            return Err(FunctionsError::Build(bin.to_owned()));
        }
    }
    Ok(())
}

/// The running watcher.
#[derive(Debug)]
pub struct Functions {
    /// The guard shell, leader of the process group that holds the watcher and the functions.
    child: Child,
    /// Its standard input, never written: when this process ends, however it ends, the pipe
    /// closes and the guard stops the whole group.
    _lifeline: Option<std::process::ChildStdin>,
    api: String,
}

/// Runs the watcher (`"$@"`) in the background of a shell that leads the process group, and
/// ends the group when the shell's standard input closes: when the stack stops, or when the
/// process that started it is gone (killed with SIGKILL, say), which no signal handler sees.
/// The shell exits with the watcher.
const GUARD: &str = r#"exec 3<&0
"$@" </dev/null 3<&- &
watcher=$!
{ trap '' TERM; read -r _ <&3; kill -TERM 0; sleep 3; kill -KILL 0; } &
wait "$watcher""#;

impl Functions {
    /// Starts `cargo lambda watch` on `127.0.0.1:{port}` with `env` for the functions.
    pub fn start(
        root: &Path,
        port: u16,
        env: &[(String, String)],
        serving: Serving,
        log: std::fs::File,
    ) -> Result<Self, FunctionsError> {
        let venv_bin = root.join(".venv/bin");
        let program = venv_bin.join("cargo-lambda");
        if !program.exists() {
            return Err(FunctionsError::NoCargoLambda(program));
        }
        let path = match std::env::var_os("PATH") {
            Some(path) => {
                let mut parts = vec![venv_bin.clone()];
                parts.extend(std::env::split_paths(&path));
                std::env::join_paths(parts).unwrap_or(path)
            }
            None => venv_bin.clone().into_os_string(),
        };
        let mut command = Command::new("sh");
        clear_cargo_run_env(&mut command);
        command
            .arg("-c")
            .arg(GUARD)
            .arg("tether-functions")
            .arg(&program);
        command.current_dir(root).env("PATH", path).args([
            "lambda",
            "watch",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
            "--concurrency",
            &serving.concurrency.max(1).to_string(),
        ]);
        if !serving.reload {
            command.arg("--ignore-changes");
        }
        if serving.release {
            command.arg("--release");
        }
        for (key, value) in env {
            command.arg("--env-var").arg(format!("{key}={value}"));
        }
        let mut child = command
            .stdin(Stdio::piped())
            // Both streams to the log: the watcher's build output and the functions' last words
            // when it stops belong there, not on the user's terminal.
            .stderr(
                log.try_clone()
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::inherit()),
            )
            .stdout(log)
            .process_group(0)
            .spawn()
            .map_err(|source| FunctionsError::Spawn {
                what: program.display().to_string(),
                source,
            })?;
        let lifeline = child.stdin.take();
        Ok(Self {
            child,
            _lifeline: lifeline,
            api: format!("http://127.0.0.1:{port}"),
        })
    }

    /// `http://127.0.0.1:{port}`: the API, on the deployed paths.
    pub fn api(&self) -> &str {
        &self.api
    }

    /// Polls until every function answers: `status`, `invoke` and `commands` through the API (answers that
    /// also prove DynamoDB is reachable), `ingest` through the Invoke API.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), FunctionsError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        let probes: [(&str, String, Option<Value>, &str); 4] = [
            (
                "GET",
                format!("{}/commands/ready-probe", self.api),
                None,
                "COMMAND_NOT_FOUND",
            ),
            (
                "GET",
                format!("{}/invocations/ready-probe", self.api),
                None,
                "INVOCATION_NOT_FOUND",
            ),
            (
                "POST",
                format!("{}/devices/ready-probe/invoke", self.api),
                Some(json!({"method": "ping"})),
                "DEVICE_NOT_CONNECTED",
            ),
            (
                "POST",
                format!("{}/2015-03-31/functions/ingest/invocations", self.api),
                Some(json!({"topic": "ready/probe"})),
                "UnknownEvent",
            ),
        ];
        let mut pending: Vec<_> = probes.iter().collect();
        while !pending.is_empty() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(FunctionsError::NotReady {
                    timeout,
                    last: format!("cargo lambda watch exited with {status}"),
                });
            }
            if started.elapsed() > timeout {
                return Err(FunctionsError::NotReady { timeout, last });
            }
            let mut still = Vec::new();
            for probe in pending {
                let (method, url, body, expected) = probe;
                let request = match *method {
                    "GET" => http.get(url),
                    _ => http.post(url).json(body),
                };
                match request.send().await {
                    Ok(response) => {
                        let text = response.text().await.unwrap_or_default();
                        if !text.contains(expected) {
                            last = format!(
                                "{method} {url}: {}",
                                text.chars().take(200).collect::<String>()
                            );
                            still.push(probe);
                        }
                    }
                    Err(err) => {
                        last = format!("{method} {url}: {err}");
                        still.push(probe);
                    }
                }
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Ok(())
    }

    /// How the watcher ended, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Ends the watcher and every function process (its process group): TERM, then KILL.
    pub fn stop(mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // The group may still hold function processes for a moment.
                self.signal("KILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal("KILL");
        let _ = self.child.wait();
    }

    fn signal(&self, name: &str) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args([&format!("-{name}"), "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Functions {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("KILL");
            let _ = self.child.wait();
        }
    }
}
