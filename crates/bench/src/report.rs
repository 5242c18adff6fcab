//! The results: a table on stdout, `bench/results.json`, and `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use crate::stats::{Figure, Goal};

pub struct Report {
    figures: Vec<Figure>,
    goals: Vec<Goal>,
    revision: String,
    machine: Value,
    took: Duration,
}

fn command_output(program: &str, args: &[&str], root: &Path) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(root)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_owned()));
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpuModel": model,
        "memory": memory,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

impl Report {
    pub fn new(
        root: &Path,
        figures: Vec<Figure>,
        goals: Vec<Goal>,
        took: Duration,
    ) -> anyhow::Result<Self> {
        let mut revision = command_output("git", &["rev-parse", "--short", "HEAD"], root)
            .unwrap_or_else(|| "unknown".into());
        if command_output(
            "git",
            &["status", "--porcelain", "--untracked-files=no"],
            root,
        )
        .is_some_and(|s| !s.is_empty())
        {
            revision.push_str(" (with uncommitted changes)");
        }
        // One table a group, in the order the groups first appear, whatever the order the
        // figures were measured in.
        let mut order: Vec<&'static str> = Vec::new();
        for figure in &figures {
            if !order.contains(&figure.group) {
                order.push(figure.group);
            }
        }
        let mut figures = figures;
        figures.sort_by_key(|f| order.iter().position(|g| *g == f.group));
        Ok(Self {
            figures,
            goals,
            revision,
            machine: machine(),
            took,
        })
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut group = "";
        for f in &self.figures {
            if f.group != group {
                group = f.group;
                let _ = writeln!(out, "\n{group}");
            }
            let _ = writeln!(
                out,
                "  {:<48} {:>10.2} {:<9} (min {:.2}, max {:.2})",
                f.name,
                f.median(),
                f.unit,
                f.min(),
                f.max()
            );
        }
        let _ = writeln!(out, "\ngoals");
        for g in &self.goals {
            let _ = writeln!(
                out,
                "  {:<48} {:>10.2}  goal {} {:<6} {}",
                g.name,
                g.value,
                if g.at_most { "<=" } else { ">=" },
                g.limit,
                if g.met() { "met" } else { "NOT MET" }
            );
        }
        out
    }

    /// BENCHMARKS.md: the explanations of `crates/bench/BENCHMARKS.head.md`, then the figures.
    fn markdown(&self, head: String) -> String {
        let mut md = head;
        let _ = writeln!(
            md,
            "\n## Latest figures\n\nRevision `{}`, measured in {:.0} s on {} ({} CPUs, {}). \
             Each figure is the median of its runs, with the smallest and largest run beside it.\n",
            self.revision,
            self.took.as_secs_f64(),
            self.machine["cpuModel"].as_str().unwrap_or("unknown CPU"),
            self.machine["cpus"],
            self.machine["memory"].as_str().unwrap_or("unknown memory"),
        );
        let mut group = "";
        for f in &self.figures {
            if f.group != group {
                group = f.group;
                let _ = writeln!(md, "\n### {group}\n\n| figure | median | min | max | unit |\n|---|---:|---:|---:|---|");
            }
            let _ = writeln!(
                md,
                "| {} | {:.2} | {:.2} | {:.2} | {} |",
                f.name,
                f.median(),
                f.min(),
                f.max(),
                f.unit
            );
        }
        let _ = writeln!(
            md,
            "\n### Goals\n\n| goal | value | limit | met |\n|---|---:|---|---|"
        );
        for g in &self.goals {
            let _ = writeln!(
                md,
                "| {} | {:.2} | {} {} | {} |",
                g.name,
                g.value,
                if g.at_most { "≤" } else { "≥" },
                g.limit,
                if g.met() { "yes" } else { "**no**" }
            );
        }
        md
    }

    pub fn write(&self, root: &Path) -> anyhow::Result<()> {
        let dir = root.join("bench");
        std::fs::create_dir_all(&dir)?;
        let json = json!({
            "revision": self.revision,
            "tookSeconds": self.took.as_secs(),
            "machine": self.machine,
            "figures": self.figures.iter().map(Figure::to_json).collect::<Vec<_>>(),
            "goals": self.goals.iter().map(Goal::to_json).collect::<Vec<_>>(),
        });
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(&json)? + "\n",
        )
        .context("writing bench/results.json")?;
        let head = std::fs::read_to_string(root.join("crates/bench/BENCHMARKS.head.md"))
            .context("reading crates/bench/BENCHMARKS.head.md")?;
        std::fs::write(root.join("BENCHMARKS.md"), self.markdown(head))
            .context("writing BENCHMARKS.md")
    }
}

/// One event per binary for the cold-start benchmark, each handled with real I/O against the
/// local stack where the function has any: a call to a simulated device (invoke: its record,
/// the confirmed send, the reply), a record read (status), a GetCommand (commands), a
/// conditional write (ingest), a batch of dead letters (redrive).
pub fn cold_start_events(root: &Path) -> anyhow::Result<Vec<(&'static str, Value)>> {
    let read = |name: &str| -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(root.join("events").join(name))
            .with_context(|| format!("events/{name}"))?;
        Ok(serde_json::from_str(&text)?)
    };
    let http = |method: &str,
                route: &str,
                path: &str,
                param: (&str, &str),
                body: Option<&str>|
     -> anyhow::Result<Value> {
        let mut event = read("invoke-request.json")?;
        event["routeKey"] = json!(format!("{method} {route}"));
        event["rawPath"] = json!(path);
        event["requestContext"]["routeKey"] = json!(format!("{method} {route}"));
        event["requestContext"]["http"]["method"] = json!(method);
        event["requestContext"]["http"]["path"] = json!(path);
        event["pathParameters"] = json!({ param.0: param.1 });
        event["body"] = body.map_or(Value::Null, |b| json!(b));
        Ok(event)
    };
    let mut presence = read("ingest-presence-connected.json")?;
    presence["clientId"] = json!("bench-cold");
    presence["topic"] = json!("$aws/events/presence/connected/bench-cold");
    Ok(vec![
        ("hello-lambda", json!({"hello": "world"})),
        (
            "invoke",
            http(
                "POST",
                "/devices/{deviceId}/invoke",
                "/devices/dev-1/invoke",
                ("deviceId", "dev-1"),
                Some(r#"{"method":"ping","timeoutMs":1000}"#),
            )?,
        ),
        (
            "status",
            http(
                "GET",
                "/invocations/{requestId}",
                "/invocations/0000bench",
                ("requestId", "0000bench"),
                None,
            )?,
        ),
        (
            "commands",
            http(
                "GET",
                "/commands/{commandId}",
                "/commands/bench-missing",
                ("commandId", "bench-missing"),
                None,
            )?,
        ),
        (
            "jobs",
            http(
                "GET",
                "/jobs/{jobId}",
                "/jobs/bench-missing",
                ("jobId", "bench-missing"),
                None,
            )?,
        ),
        ("ingest", presence),
        ("redrive", read("ingest-redrive-sqs.json")?),
    ])
}
