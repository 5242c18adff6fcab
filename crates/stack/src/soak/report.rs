//! The soak's report: `SOAK.md` for people, a JSON file for tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};

use super::check::{redelivered, INVARIANTS};
use super::faults::KINDS;
use super::observed::Record;
use super::Outcome;
use crate::procs::{drift, Drift};

/// The goal for the resident memory of each long-lived process: end within 10 % of after
/// warm-up.
pub const RSS_DRIFT_GOAL: f64 = 0.10;

/// How many file descriptors a process group may hold at the end beyond after warm-up
/// before it counts as growth (connections come and go): this many, or 5 %, whichever is more.
pub const FD_SLACK: u64 = 8;

fn fd_slack(after_warmup: u64) -> u64 {
    FD_SLACK.max(after_warmup / 20)
}

fn count_by<'a>(items: impl Iterator<Item = String> + 'a) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item).or_default() += 1;
    }
    counts
}

fn table(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The counts both reports show, computed once.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Direct invocations by `"{method} {HTTP status}"`.
    pub invoke: BTreeMap<String, u64>,
    pub invoke_with_key: usize,
    /// Fan-outs by HTTP status.
    pub fan_out: BTreeMap<String, u64>,
    pub executions_started: usize,
    /// `POST /jobs` by `"{operation} {HTTP status}"`.
    pub jobs: BTreeMap<String, u64>,
    /// Job executions read at the end, by status.
    pub job_execution_states: BTreeMap<String, u64>,
    /// Job execution updates the devices sent, by status.
    pub job_updates: BTreeMap<String, u64>,
    /// Reads by HTTP status.
    pub reads: BTreeMap<String, u64>,
    pub redelivered: usize,
    /// Final records by status.
    pub invocation_states: BTreeMap<String, u64>,
    pub execution_states: BTreeMap<String, u64>,
    pub faults: BTreeMap<String, u64>,
    pub drifts: Vec<Drift>,
    pub passed: bool,
}

fn states(records: &BTreeMap<String, Record>) -> BTreeMap<String, u64> {
    count_by(
        records
            .values()
            .map(|r| r.state().unwrap_or("(none)").to_owned()),
    )
}

impl Figures {
    pub fn of(outcome: &Outcome) -> Self {
        let o = &outcome.observed;
        let drifts = drift(&outcome.samples);
        Self {
            invoke: count_by(
                o.calls
                    .iter()
                    .map(|c| format!("{} {}", c.method, c.http.status)),
            ),
            invoke_with_key: o.calls.iter().filter(|c| c.key.is_some()).count(),
            fan_out: count_by(o.runs.iter().map(|r| r.http.status.to_string())),
            executions_started: o
                .runs
                .iter()
                .flat_map(|r| &r.executions)
                .filter(|e| e.execution_id.is_some())
                .count(),
            jobs: count_by(
                o.jobs
                    .iter()
                    .map(|j| format!("{} {}", j.operation, j.http.status)),
            ),
            job_execution_states: count_by(
                o.job_executions
                    .values()
                    .flatten()
                    .map(|e| e.status.clone()),
            ),
            job_updates: count_by(o.job_updates.iter().map(|u| u.status.clone())),
            reads: count_by(o.reads.iter().map(|r| r.http.status.to_string())),
            redelivered: redelivered(o),
            invocation_states: states(&o.invocations),
            execution_states: states(&o.executions),
            faults: count_by(o.windows.iter().map(|w| w.kind.to_owned())),
            passed: outcome.violations.is_empty() && fd_growth(&drifts).is_empty(),
            drifts,
        }
    }
}

/// Process groups whose open descriptors grew.
pub fn fd_growth(drifts: &[Drift]) -> Vec<&Drift> {
    drifts
        .iter()
        .filter(|d| d.fds_at_end > d.fds_after_warmup + fd_slack(d.fds_after_warmup))
        .collect()
}

/// The figures, as JSON.
pub fn json(outcome: &Outcome, figures: &Figures) -> Value {
    let o = &outcome.observed;
    json!({
        "passed": figures.passed,
        "config": {
            "durationSeconds": outcome.config.duration.as_secs(),
            "devices": outcome.config.devices,
            "flappingDevices": outcome.config.flappers,
            "workers": outcome.config.workers,
            "faultEverySeconds": outcome.config.fault_every.as_secs(),
            "seed": outcome.config.seed,
        },
        "trafficSeconds": outcome.traffic_seconds,
        "totalSeconds": outcome.total_seconds,
        "requests": {
            "invoke": figures.invoke,
            "invokeWithKey": figures.invoke_with_key,
            "fanOut": figures.fan_out,
            "executionsStarted": figures.executions_started,
            "jobs": figures.jobs,
            "reads": figures.reads,
        },
        "devices": {
            "received": o.got.len(),
            "answered": o.answered.len(),
            "jobUpdates": figures.job_updates,
            "redelivered": figures.redelivered,
        },
        "records": {
            "invocations": figures.invocation_states,
            "executions": figures.execution_states,
            "jobExecutions": figures.job_execution_states,
        },
        "faults": figures.faults,
        "deadLetters": {
            "replayed": outcome.schedule.replayed,
            "replayFailures": outcome.schedule.replay_failed,
            "left": o.dead_letters.len(),
        },
        "violations": outcome.violations,
        "processes": figures.drifts,
    })
}

/// `SOAK.md`.
pub fn markdown(outcome: &Outcome, figures: &Figures) -> String {
    let c = &outcome.config;
    let mut md = String::new();
    let _ = writeln!(md, "# Soak\n");
    let _ = writeln!(
        md,
        "Written by `make soak` (`tether-soak`); what it does and how to read it: \
         [docs/soak.md](docs/soak.md).\n"
    );
    let _ = writeln!(
        md,
        "**{}** — {} invariant violation(s); {:.0} s of traffic ({:.0} s in all) against {} \
         steady and {} flapping devices, {} callers, a fault every {} s (seed {}).\n",
        if figures.passed { "PASSED" } else { "FAILED" },
        outcome.violations.len(),
        outcome.traffic_seconds,
        outcome.total_seconds,
        c.devices,
        c.flappers,
        c.workers,
        c.fault_every.as_secs(),
        c.seed,
    );

    requests(&mut md, outcome, figures);
    faults(&mut md, outcome, figures);
    invariants(&mut md, outcome);
    memory(&mut md, &figures.drifts);
    md
}

/// One row of the requests table: what, how many, and by outcome (if counted).
fn row(md: &mut String, kind: &str, count: usize, by: Option<&BTreeMap<String, u64>>) {
    let by = by.map_or(" ".to_owned(), |by| format!(" {} ", table(by)));
    let _ = writeln!(md, "| {kind} | {count} |{by}|");
}

fn requests(md: &mut String, outcome: &Outcome, figures: &Figures) {
    let o = &outcome.observed;
    let _ = writeln!(md, "## Requests\n");
    let _ = writeln!(md, "| kind | count | by outcome |\n|---|---:|---|");
    row(
        md,
        "direct invocations",
        o.calls.len(),
        Some(&figures.invoke),
    );
    row(
        md,
        "… with an Idempotency-Key (sent twice at once, or retried after a 503)",
        figures.invoke_with_key,
        None,
    );
    row(
        md,
        "Commands fan-outs (5 devices, waiting)",
        o.runs.len(),
        Some(&figures.fan_out),
    );
    row(md, "executions started", figures.executions_started, None);
    row(
        md,
        "jobs (3 steady devices, and a flapping one every other time)",
        o.jobs.len(),
        Some(&figures.jobs),
    );
    row(
        md,
        "job executions read at the end",
        o.job_executions.values().map(Vec::len).sum(),
        Some(&figures.job_execution_states),
    );
    row(
        md,
        "reads (records, presence, lists)",
        o.reads.len(),
        Some(&figures.reads),
    );
    let _ = writeln!(
        md,
        "\nDevices received {} requests ({} redelivered under the same id) and sent {} answers. \
         Final records: invocations {}; executions {}. Job updates the devices sent: {}.\n",
        o.got.len(),
        figures.redelivered,
        o.answered.len(),
        table(&figures.invocation_states),
        table(&figures.execution_states),
        table(&figures.job_updates),
    );
}

fn faults(md: &mut String, outcome: &Outcome, figures: &Figures) {
    let o = &outcome.observed;
    let _ = writeln!(md, "## Faults injected\n");
    let faults = &figures.faults;
    let _ = writeln!(md, "| fault | times |\n|---|---:|");
    for kind in KINDS {
        let _ = writeln!(
            md,
            "| {kind} | {} |",
            faults.get(kind).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(
        md,
        "\nDead letters: {} delivered by the replays, {} replay attempts failed, {} left at the end.\n",
        outcome.schedule.replayed,
        outcome.schedule.replay_failed,
        o.dead_letters.len()
    );
}

fn invariants(md: &mut String, outcome: &Outcome) {
    let _ = writeln!(md, "## Invariants\n");
    let _ = writeln!(
        md,
        "| invariant | what it means | violations |\n|---|---|---:|"
    );
    for (name, meaning) in INVARIANTS {
        let n = outcome
            .violations
            .iter()
            .filter(|v| v.invariant == name)
            .count();
        let _ = writeln!(md, "| {name} | {meaning} | {n} |");
    }
    if !outcome.violations.is_empty() {
        let _ = writeln!(md, "\nThe first violations:\n");
        for v in outcome.violations.iter().take(30) {
            let _ = writeln!(md, "- `{}`: {}", v.invariant, v.detail);
        }
    }
}

fn memory(md: &mut String, drifts: &[Drift]) {
    let _ = writeln!(md, "\n## Memory and open files\n");
    let _ = writeln!(
        md,
        "Resident memory and open descriptors per process name, after warm-up (mean of the \
         run's second quarter) against the end (mean of its last quarter). Goal: RSS drift \
         under {:.0} %; descriptors not growing (more than {FD_SLACK} or 5 % above after \
         warm-up, whichever is more, fails the run).\n",
        RSS_DRIFT_GOAL * 100.0
    );
    let _ = writeln!(
        md,
        "| process | RSS after warm-up (MiB) | RSS at end (MiB) | drift | goal met | fds after warm-up | fds at end |\n|---|---:|---:|---:|---|---:|---:|"
    );
    for d in drifts {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.1} | {:+.1} % | {} | {} | {} |",
            d.name,
            d.rss_kib_after_warmup as f64 / 1024.0,
            d.rss_kib_at_end as f64 / 1024.0,
            d.rss_drift * 100.0,
            if d.rss_drift < RSS_DRIFT_GOAL {
                "yes"
            } else {
                "**no**"
            },
            d.fds_after_warmup,
            d.fds_at_end
        );
    }
}
