//! The order of a `make bench` run, one function a benchmark: what each records into the
//! [`Figures`], and the goals read from them at the end.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::stats::{self, Figure, Goal};
use crate::{cli, coldstart, cpu, ingest, invoke, jobs, report, wait, Env};

const E2E: &str = "invoke, end to end";
const POLLING: &str = "invoke, end to end: the rule and polling path (no inbox), same run";
const HOPS: &str = "hops (p50)";
const BASE: &str = "blog baseline (connect per call)";
const DEADLINE: &str = "deadline: 504 after timeoutMs";
const INGEST: &str = "ingest throughput";
const LOAD: &str = "load: 500 calls at once over 100 devices";
const COLD: &str = "cold start and footprint";
const CPU: &str = "where the CPU goes: invoke at c=64";
const WAIT: &str = "commands wait: one round over 100 targets";
const CLI: &str = "tether CLI: a whole process, p50 (p90)";
const JOBS: &str = "AWS IoT Jobs beside a Commands fan-out, same devices";
const OVERHEAD: &str = "overhead ratio (Tether c=1 p50 / sum)";

/// Every figure of the run, each with the values of the repeated runs.
#[derive(Default)]
pub struct Figures(Vec<Figure>);

impl Figures {
    /// Adds one run's value of a figure.
    fn add(&mut self, group: &'static str, name: &str, unit: &'static str, value: f64) {
        match self
            .0
            .iter_mut()
            .find(|f| f.group == group && f.name == name)
        {
            Some(f) => f.runs.push(value),
            None => {
                let mut f = Figure::new(group, name, unit);
                f.runs.push(value);
                self.0.push(f);
            }
        }
    }

    fn find(&self, group: &str, name: &str) -> Option<&Figure> {
        self.0.iter().find(|f| f.group == group && f.name == name)
    }

    fn worst(&self, group: &str, name: &str) -> f64 {
        self.find(group, name).map(Figure::max).unwrap_or(f64::NAN)
    }

    fn median(&self, group: &str, name: &str) -> f64 {
        self.find(group, name)
            .map(Figure::median)
            .unwrap_or(f64::NAN)
    }
}

/// The whole run: `runs` rounds of the latency and throughput benchmarks, then the commands
/// wait, the cold starts and (if asked) the load; returns the figures and the goals.
pub async fn run(
    env: &Env,
    stack: &mut tether_stack::Stack,
    root: &Path,
    functions: &Path,
    cli: Option<&Path>,
    runs: usize,
    with_load: bool,
) -> anyhow::Result<(Vec<Figure>, Vec<Goal>)> {
    let mut f = Figures::default();
    // Warm the functions and connections up; not measured.
    invoke::end_to_end(env, 32, 8).await;

    for run in 1..=runs {
        eprintln!("run {run}/{runs}: invoke");
        let c1_p50 = end_to_end(env, &mut f, E2E).await;
        eprintln!("run {run}/{runs}: hops");
        hops(env, &mut f, c1_p50).await?;
        eprintln!("run {run}/{runs}: deadline");
        deadline(env, &mut f).await?;
        eprintln!("run {run}/{runs}: baseline");
        baseline(env, &mut f).await?;
        // The baseline's 60 connections leave 120 presence events for ingest to write;
        // let the local DynamoDB endpoint drain them before the next measurement.
        tokio::time::sleep(Duration::from_secs(3)).await;
        eprintln!("run {run}/{runs}: ingest");
        ingest_throughput(env, &mut f, run).await?;
    }
    // The path before the inbox, in the same run: the same functions started without
    // REPLY_INBOX, so a reply reaches the waiting call through the rule, ingest's writes and
    // invoke's polling. Then back to the inbox for the rest.
    eprintln!("the rule and polling path: restarting the functions without REPLY_INBOX");
    stack.restart_functions(&[("REPLY_INBOX", "")]).await?;
    invoke::end_to_end(env, 32, 8).await;
    for run in 1..=runs {
        eprintln!("run {run}/{runs}: invoke, rule and polling path");
        end_to_end(env, &mut f, POLLING).await;
    }
    eprintln!("restarting the functions with their inbox");
    stack.restart_functions(&[]).await?;
    invoke::end_to_end(env, 32, 8).await;
    eprintln!("commands wait: read units of one round");
    commands_wait(env, &mut f).await?;
    for run in 1..=runs {
        eprintln!("run {run}/{runs}: jobs beside commands");
        jobs_beside_commands(env, &mut f).await?;
    }
    if let Some(binary) = cli {
        eprintln!("the command line");
        command_line(env, &mut f, binary, root, runs).await?;
    }
    eprintln!("cold starts");
    cold_starts(env, &mut f, root, functions, runs).await?;
    if with_load {
        eprintln!("load");
        load(env, &mut f).await;
    }
    let goals = goals(&f, with_load);
    Ok((f.0, goals))
}

/// Latency at c=1 and throughput at c=16 and c=64 into `group` (with where the CPU went at
/// c=64 for the default path); returns the c=1 p50 for the overhead ratio.
async fn end_to_end(env: &Env, f: &mut Figures, group: &'static str) -> f64 {
    let c1 = invoke::end_to_end(env, 200, 1).await;
    f.add(group, "c=1 p50", "ms", c1.p(50.0));
    f.add(group, "c=1 p90", "ms", c1.p(90.0));
    f.add(group, "c=1 p99", "ms", c1.p(99.0));
    for c in [16, 64] {
        let before = cpu::snapshot();
        let batch = invoke::end_to_end(env, c * 10, c).await;
        if c == 64 && group == E2E {
            // What the next ceiling is: where the CPU of the two cores went.
            let (shares, total) = cpu::shares(&before, &cpu::snapshot());
            for (part, share) in shares {
                f.add(CPU, &part, "% of CPU", share);
            }
            f.add(CPU, "CPU time used", "s", total);
        }
        let throughput = batch.throughput();
        f.add(group, &format!("c={c} throughput"), "calls/s", throughput);
        f.add(group, &format!("c={c} p50"), "ms", batch.p(50.0));
        f.add(group, &format!("c={c} p99"), "ms", batch.p(99.0));
        f.add(
            group,
            &format!("c={c} errors"),
            "calls",
            batch.errors as f64,
        );
    }
    f.add(group, "c=1 errors", "calls", c1.errors as f64);
    c1.p(50.0)
}

/// The hops one by one, the sum of those the inbox path cannot avoid (HTTP into the function,
/// one record write, the confirmed send, the device's round trip with the reply's delivery),
/// and Tether's c=1 p50 over it. The rule path's hops (rule into ingest, the consistent read)
/// are measured beside them, not summed.
async fn hops(env: &Env, f: &mut Figures, c1_p50: f64) -> anyhow::Result<()> {
    let mut sum = 0.0;
    for (name, p50) in invoke::hops(env, 100).await? {
        f.add(HOPS, name, "ms", p50);
        if !invoke::RULE_PATH_HOPS.contains(&name) {
            sum += p50;
        }
    }
    f.add(HOPS, "sum of the hops", "ms", sum);
    f.add(HOPS, OVERHEAD, "x", c1_p50 / sum);
    Ok(())
}

/// How late the 504 comes after each deadline.
async fn deadline(env: &Env, f: &mut Figures) -> anyhow::Result<()> {
    for (timeout, calls) in [(200, 24), (1000, 8), (3000, 4)] {
        let late = invoke::deadline(env, timeout, calls).await?;
        let p = |q| stats::percentile(&late, q).unwrap_or(f64::NAN);
        f.add(DEADLINE, &format!("{timeout} ms: p50"), "ms", p(50.0));
        f.add(DEADLINE, &format!("{timeout} ms: p99"), "ms", p(99.0));
    }
    Ok(())
}

/// The blog sample's connect-per-call baseline.
async fn baseline(env: &Env, f: &mut Figures) -> anyhow::Result<()> {
    let baseline = invoke::baseline(env, 60, 1).await?;
    f.add(BASE, "p50", "ms", baseline.p(50.0));
    f.add(BASE, "p99", "ms", baseline.p(99.0));
    f.add(BASE, "errors", "calls", baseline.errors as f64);
    // At Tether's concurrency levels, with as many connections opened and closed at once.
    for c in [16, 64] {
        let batch = invoke::baseline(env, c * 4, c).await?;
        f.add(BASE, &format!("c={c} p50"), "ms", batch.p(50.0));
        f.add(BASE, &format!("c={c} p99"), "ms", batch.p(99.0));
        f.add(
            BASE,
            &format!("c={c} throughput"),
            "calls/s",
            batch.throughput(),
        );
        f.add(BASE, &format!("c={c} errors"), "calls", batch.errors as f64);
    }
    Ok(())
}

/// Events through the handler against raw conditional PutItems, at c=1 and c=16.
async fn ingest_throughput(env: &Env, f: &mut Figures, run: usize) -> anyhow::Result<()> {
    for c in [1, 16] {
        let events = ingest::events(400, run as u64 * 100 + c as u64);
        let count = events.len();
        let handler = ingest::through_handler(env, events, c).await;
        let floor = ingest::floor(env, count, c).await?;
        let at = |what: &str| format!("c={c} {what}");
        f.add(INGEST, &at("handler"), "events/s", handler.per_second);
        f.add(INGEST, &at("PutItem floor"), "puts/s", floor.per_second);
        f.add(
            INGEST,
            &at("ratio"),
            "x",
            handler.per_second / floor.per_second,
        );
        f.add(
            INGEST,
            &at("handler errors"),
            "events",
            handler.errors as f64,
        );
    }
    Ok(())
}

/// Jobs created a second, and one job over every device against one Commands fan-out to them.
async fn jobs_beside_commands(env: &Env, f: &mut Figures) -> anyhow::Result<()> {
    for c in [1, 8] {
        let rate = jobs::creation_rate(env, 40, c).await?;
        f.add(JOBS, &format!("POST /jobs at c={c}"), "jobs/s", rate);
    }
    let n = env.devices;
    f.add(
        JOBS,
        &format!("job over {n} devices: POST to all SUCCEEDED"),
        "ms",
        jobs::fleet_job(env).await?,
    );
    f.add(
        JOBS,
        &format!("Commands fan-out to {n} devices: POST to all SUCCEEDED (waitMs)"),
        "ms",
        jobs::commands_fan_out(env).await?,
    );
    Ok(())
}

/// Read units and requests of one wait round, the old per-target Query against BatchGetItem.
async fn commands_wait(env: &Env, f: &mut Figures) -> anyhow::Result<()> {
    for events in [3, 20] {
        let (query, batch) = wait::rounds(env, events).await?;
        let at = |what: &str| format!("{events}-entry timelines: {what}");
        let units = "RCU";
        f.add(
            WAIT,
            &at("Query each (before) read units"),
            units,
            query.read_units,
        );
        f.add(
            WAIT,
            &at("Query each (before) requests"),
            "requests",
            query.requests as f64,
        );
        f.add(
            WAIT,
            &at("BatchGetItem (now) read units"),
            units,
            batch.read_units,
        );
        f.add(
            WAIT,
            &at("BatchGetItem (now) requests"),
            "requests",
            batch.requests as f64,
        );
    }
    Ok(())
}

/// `tether --help`, and the same call by `tether`, curl and awscurl, each a whole process
/// (20 a run).
async fn command_line(
    env: &Env,
    f: &mut Figures,
    binary: &Path,
    root: &Path,
    runs: usize,
) -> anyhow::Result<()> {
    for _ in 0..runs {
        for (name, p50, p90) in cli::startup(env, binary, root, 20).await? {
            f.add(CLI, &format!("{name}: p50"), "ms", p50);
            f.add(CLI, &format!("{name}: p90"), "ms", p90);
        }
    }
    Ok(())
}

/// Init time and peak RSS of each function (at least five cold starts) and its zipped size,
/// beside a hello-world `lambda_runtime` binary.
async fn cold_starts(
    env: &Env,
    f: &mut Figures,
    root: &Path,
    functions: &Path,
    runs: usize,
) -> anyhow::Result<()> {
    let harness = std::env::current_exe()?
        .parent()
        .context("the harness's directory")?
        .to_path_buf();
    let scratch = root.join(".local/bench/zips");
    std::fs::create_dir_all(&scratch)?;
    let without = |name: &str| -> Vec<(String, String)> {
        env.function_env
            .iter()
            .filter(|(n, _)| n != name)
            .cloned()
            .collect()
    };
    let with = |base: &[(String, String)], name: &str, value: &str| -> Vec<(String, String)> {
        let mut changed: Vec<_> = base.iter().filter(|(n, _)| n != name).cloned().collect();
        changed.push((name.to_owned(), value.to_owned()));
        changed
    };
    // TLS in front of DynamoDB, iot-data and the inbox's WebSocket, as deployed.
    let mut fronts = tether_testkit::tls::Fronts::new(
        &root.join(".local/bench/tls"),
        Path::new(
            &value_of(&env.function_env, "SSL_CERT_FILE")
                .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".to_owned()),
        ),
    )?;
    let over_tls = over_tls(&env.function_env, &mut fronts).await?;
    for (name, event) in report::cold_start_events(root)? {
        let binary = match name {
            "hello-lambda" => harness.join(name),
            _ => functions.join(name),
        };
        // invoke also without its inbox (no MQTT connection opened during init), without
        // SSL_CERT_FILE (the trust store found by scanning the system's certificate paths),
        // without warming its connections up during init, and with its endpoints behind TLS
        // with and without the warm-up (the first call then pays the handshakes).
        let mut variants = vec![(name.to_owned(), env.function_env.clone())];
        if name == "invoke" {
            variants.push(("invoke without inbox".to_owned(), without("REPLY_INBOX")));
            variants.push((
                "invoke without SSL_CERT_FILE".to_owned(),
                without("SSL_CERT_FILE"),
            ));
            variants.push((
                "invoke without warm-up".to_owned(),
                with(&env.function_env, "WARM_UP", "off"),
            ));
            variants.push(("invoke over TLS".to_owned(), over_tls.clone()));
            variants.push((
                "invoke over TLS without warm-up".to_owned(),
                with(&over_tls, "WARM_UP", "off"),
            ));
        }
        for (label, function_env) in variants {
            for _ in 0..runs.max(5) {
                let cold = coldstart::measure(&binary, event.clone(), &function_env)
                    .await
                    .with_context(|| format!("cold start of {label}"))?;
                f.add(COLD, &format!("{label}: init"), "ms", cold.init_ms);
                f.add(
                    COLD,
                    &format!("{label}: first call"),
                    "ms",
                    cold.first_call_ms,
                );
                f.add(
                    COLD,
                    &format!("{label}: peak RSS"),
                    "MiB",
                    cold.peak_rss_kib as f64 / 1024.0,
                );
            }
        }
        let zipped = coldstart::zipped_size(&binary, &scratch)? as f64 / (1024.0 * 1024.0);
        f.add(COLD, &format!("{name}: zipped"), "MiB", zipped);
    }
    Ok(())
}

/// The value of `name` in a function environment.
fn value_of(env: &[(String, String)], name: &str) -> anyhow::Result<String> {
    env.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .with_context(|| format!("the functions' environment has no {name}"))
}

/// The functions' environment with DynamoDB, iot-data and the inbox behind TLS fronts
/// (`https://`, `wss://`), trusted through `SSL_CERT_FILE`.
async fn over_tls(
    env: &[(String, String)],
    fronts: &mut tether_testkit::tls::Fronts,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut changed = Vec::with_capacity(env.len());
    for (name, value) in env {
        let value = match name.as_str() {
            "AWS_ENDPOINT_URL_DYNAMODB" | "AWS_ENDPOINT_URL_IOT_DATA_PLANE" => {
                let front = fronts.front(tether_testkit::tls::socket_of(value)?).await?;
                format!("https://{front}")
            }
            "REPLY_INBOX" => {
                let front = fronts.front(tether_testkit::tls::socket_of(value)?).await?;
                format!("wss://{front}/mqtt")
            }
            "SSL_CERT_FILE" => fronts.bundle.display().to_string(),
            _ => value.clone(),
        };
        changed.push((name.clone(), value));
    }
    Ok(changed)
}

/// 500 calls at once over the devices: every answer must be its own call's.
async fn load(env: &Env, f: &mut Figures) {
    let load = invoke::load(env, 500).await;
    let batch = &load.batch;
    f.add(
        LOAD,
        "calls answered by their own device",
        "calls",
        batch.latencies.len() as f64,
    );
    f.add(LOAD, "errors", "calls", batch.errors as f64);
    f.add(
        LOAD,
        "cross-talk (another call's answer)",
        "calls",
        load.cross_talk as f64,
    );
    f.add(LOAD, "wall time", "s", batch.wall.as_secs_f64());
    f.add(LOAD, "throughput", "calls/s", batch.throughput());
    f.add(LOAD, "p50", "ms", batch.p(50.0));
    f.add(LOAD, "p99", "ms", batch.p(99.0));
}

fn at_most(name: impl Into<String>, value: f64, limit: f64) -> Goal {
    Goal {
        name: name.into(),
        value,
        limit,
        at_most: true,
    }
}

fn at_least(name: impl Into<String>, value: f64, limit: f64) -> Goal {
    Goal {
        name: name.into(),
        value,
        limit,
        at_most: false,
    }
}

/// The goals, read from the medians (the load's from the worst run: one wrong answer in any
/// run is one too many).
fn goals(f: &Figures, with_load: bool) -> Vec<Goal> {
    let mut goals = vec![at_most(
        "overhead ratio (c=1 p50 over the sum of the hops)",
        f.median(HOPS, OVERHEAD),
        1.3,
    )];
    // Issue 15: no slower than opening a connection per call on the same broker and devices.
    goals.push(at_most(
        "invoke c=1 p50 over the connect-per-call baseline's",
        f.median(E2E, "c=1 p50") / f.median(BASE, "p50"),
        1.0,
    ));
    for c in [16, 64] {
        goals.push(at_most(
            format!("invoke c={c} p50 over the connect-per-call baseline's"),
            f.median(E2E, &format!("c={c} p50")) / f.median(BASE, &format!("c={c} p50")),
            1.0,
        ));
    }
    // The inbox against the path it replaced, measured in the same run.
    for c in [1, 16, 64] {
        let p50 = format!("c={c} p50");
        goals.push(at_most(
            format!("invoke c={c} p50 over the rule and polling path's"),
            f.median(E2E, &p50) / f.median(POLLING, &p50),
            1.0,
        ));
    }
    for timeout in [200, 1000, 3000] {
        let p99 = f.median(DEADLINE, &format!("{timeout} ms: p99"));
        goals.push(at_most(format!("deadline p99, {timeout} ms"), p99, 50.0));
    }
    if with_load {
        let wrong = f.worst(LOAD, "errors") + f.worst(LOAD, "cross-talk (another call's answer)");
        goals.push(at_most(
            "load: errors and cross-talk in 500 calls",
            wrong,
            0.0,
        ));
    }
    // Issue 20: the local DynamoDB endpoint no longer the ceiling — 3x the 76-81 calls/s and
    // 5x the 170-190 events/s measured on moto's server.
    for c in [16, 64] {
        let throughput = f.median(E2E, &format!("c={c} throughput"));
        let name = format!("invoke c={c} throughput, calls/s (3x moto's 81)");
        goals.push(at_least(name, throughput, 243.0));
    }
    goals.push(at_least(
        "ingest c=16 handler, events/s (5x moto's 190)",
        f.median(INGEST, "c=16 handler"),
        950.0,
    ));
    for c in [1, 16] {
        let share = f.median(INGEST, &format!("c={c} ratio"));
        let name = format!("ingest c={c}, share of the PutItem floor");
        goals.push(at_least(name, share, 0.8));
    }
    let hello_init = f.median(COLD, "hello-lambda: init");
    for name in tether_stack::functions::FUNCTIONS {
        let init = f.median(COLD, &format!("{name}: init")) / hello_init;
        goals.push(at_most(
            format!("{name}: init over hello-lambda's"),
            init,
            1.5,
        ));
        let rss = f.median(COLD, &format!("{name}: peak RSS"));
        goals.push(at_most(format!("{name}: peak RSS (MiB)"), rss, 32.0));
        let zipped = f.median(COLD, &format!("{name}: zipped"));
        goals.push(at_most(
            format!("{name}: zipped package (MiB)"),
            zipped,
            6.0,
        ));
    }
    goals
}
