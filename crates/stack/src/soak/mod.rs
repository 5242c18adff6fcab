//! The soak (`make soak`): the whole local stack with many simulated devices under mixed
//! traffic for a bounded time while faults are injected on a schedule; then everything is
//! left to settle, the dead letters are replayed, every record is read back, and the
//! invariants ([`check::INVARIANTS`]) are checked over all of it. The report is `SOAK.md`
//! and a JSON file.

pub mod check;
pub mod faults;
pub mod observed;
pub mod report;
pub mod traffic;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use tether_device::{Behaviours, Fleet, FleetConfig, Kind};

use crate::procs;
use crate::Stack;
use faults::Flappers;
use observed::{Answered, Got, JobExecution, Observed, Record};
use traffic::Traffic;

/// Seconds since the soak started.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// `at` in seconds since the soak started.
    pub fn at(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub duration: Duration,
    /// Devices that stay connected (`soak-1..N`).
    pub devices: usize,
    /// Devices that the schedule disconnects and reconnects (`flap-1..N`).
    pub flappers: usize,
    /// Callers working at once.
    pub workers: usize,
    /// Time between faults.
    pub fault_every: Duration,
    /// The faults injected, in turn ([`faults::KINDS`]).
    pub faults: Vec<&'static str>,
    pub seed: u64,
}

/// Everything a soak run found.
pub struct Outcome {
    pub config: SoakConfig,
    pub observed: Observed,
    pub schedule: faults::Schedule,
    pub samples: Vec<procs::Sample>,
    pub violations: Vec<check::Violation>,
    /// Wall time of the traffic phase and of the whole run, seconds.
    pub traffic_seconds: f64,
    pub total_seconds: f64,
}

/// The commands the fan-outs start: (id, the method their payload names).
const COMMANDS: [(&str, &str); 3] = [
    ("soak-ping", "ping"),
    ("soak-fail", "fail"),
    ("soak-late", "late"),
];

/// Longest an invocation or execution can stay open (an execution's 10 s timeout), plus the
/// time for the last events to reach the store.
const SETTLE: Duration = Duration::from_secs(20);

fn fleet_config(stack: &Stack, prefix: &str, count: usize) -> anyhow::Result<FleetConfig> {
    let iot = stack.iot().context("no local-iot")?;
    let mut behaviours = Behaviours::default();
    behaviours.apply_rules(crate::default_behaviours().iter().map(String::as_str))?;
    let ids = tether_device::config::numbered(prefix, count)?;
    let mut config = FleetConfig::local(iot.mqtt_addr(), ids).with_behaviours(behaviours);
    // Keep every message: the invariants need all of them.
    config.received_limit = usize::MAX;
    Ok(config)
}

async fn create_commands(api: &str) -> anyhow::Result<Vec<String>> {
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for (id, method) in COMMANDS {
        let id = format!("{id}-{}", std::process::id());
        let response = http
            .post(format!("{api}/commands"))
            .json(&json!({"commandId": id, "payload": {"content": {"method": method}}}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().as_u16() == 201,
            "creating {id}: {}",
            response.text().await.unwrap_or_default()
        );
        ids.push(id);
    }
    Ok(ids)
}

/// Samples the processes every few seconds until `stop` is set.
async fn sample_until(clock: Clock, stop: Arc<tokio::sync::Notify>) -> Vec<procs::Sample> {
    let mut samples = Vec::new();
    loop {
        samples.push(procs::sample(clock.now()));
        tokio::select! {
            _ = stop.notified() => return samples,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// The devices and commands a soak run works with.
struct Setup {
    steady: Fleet,
    flappers: Flappers,
    devices: Vec<String>,
    flapping: Vec<String>,
    commands: Vec<String>,
}

/// Connects the steady and the flapping devices, waits until their presence is recorded, and
/// creates the commands the fan-outs start.
async fn set_up(stack: &Stack, config: &SoakConfig) -> anyhow::Result<Setup> {
    tracing::info!(
        devices = config.devices,
        flappers = config.flappers,
        "connecting the soak's devices"
    );
    let api = &stack.endpoints.api;
    let steady = Fleet::start(fleet_config(stack, "soak-", config.devices)?).await?;
    let flappers = Flappers::start(fleet_config(stack, "flap-", config.flappers)?).await?;
    let flapping_ids = tether_device::config::numbered("flap-", config.flappers)?;
    let all: Vec<tether_domain::DeviceId> = steady
        .ids()
        .into_iter()
        .chain(flapping_ids.clone())
        .collect();
    crate::wait_connected(api, &all, Duration::from_secs(120)).await?;
    let text = |ids: Vec<tether_domain::DeviceId>| ids.iter().map(ToString::to_string).collect();
    Ok(Setup {
        devices: text(steady.ids()),
        flapping: text(flapping_ids),
        commands: create_commands(api).await?,
        steady,
        flappers,
    })
}

/// Runs the soak against a started stack (started without devices of its own).
pub async fn run(stack: &Stack, config: SoakConfig) -> anyhow::Result<Outcome> {
    let clock = Clock::new();
    let api = stack.endpoints.api.clone();
    let Setup {
        steady,
        flappers,
        devices,
        flapping,
        commands,
    } = set_up(stack, &config).await?;

    let stop_sampling = Arc::new(tokio::sync::Notify::new());
    let sampler = tokio::spawn(sample_until(clock, stop_sampling.clone()));

    tracing::info!(duration = ?config.duration, workers = config.workers, "traffic and faults");
    let until = Instant::now() + config.duration;
    let traffic = Arc::new(Traffic::new(&api, clock, devices, flapping, commands)?);
    let workers: Vec<_> = (0..config.workers)
        .map(|i| {
            let traffic = Arc::clone(&traffic);
            let seed = config.seed.wrapping_add(i as u64);
            tokio::spawn(async move { traffic.worker(seed, until).await })
        })
        .collect();
    let schedule = faults::run(
        stack,
        &flappers,
        &clock,
        &config.faults,
        config.fault_every,
        until,
    )
    .await;
    for worker in workers {
        worker.await.context("a caller panicked")?;
    }
    let mut schedule = schedule?;
    let traffic_seconds = clock.now();

    tracing::info!("settling: no new calls; replaying the dead letters; reading every record");
    tokio::time::sleep(SETTLE).await;
    let (delivered, failed) = faults::replay(stack).await;
    schedule.replayed += delivered;
    schedule.replay_failed += failed;
    tokio::time::sleep(Duration::from_secs(3)).await;

    stop_sampling.notify_one();
    let samples = sampler.await.unwrap_or_default();

    let (mut received, mut sent) = flappers.stop().await;
    received.extend(steady.received());
    sent.extend(steady.sent());
    steady.shutdown().await;

    let log = std::mem::take(&mut *traffic.log.lock().unwrap_or_else(|e| e.into_inner()));
    let mut observed = observe(&clock, log, &received, &sent);
    observed.windows = std::mem::take(&mut schedule.windows);
    observed.dead_letters = stack.iot().map(|i| i.dead_letters()).unwrap_or_default();
    read_records(&api, &mut observed).await?;
    let violations = check::check(&observed);
    Ok(Outcome {
        config,
        observed,
        schedule,
        samples,
        violations,
        traffic_seconds,
        total_seconds: clock.now(),
    })
}

/// What the callers logged and the devices received and sent, in the invariants' terms.
fn observe(
    clock: &Clock,
    log: traffic::Log,
    received: &[tether_device::Received],
    sent: &[tether_device::Sent],
) -> Observed {
    Observed {
        calls: log.calls,
        runs: log.runs,
        jobs: log.jobs,
        reads: log.reads,
        got: received
            .iter()
            .filter(|r| matches!(r.kind, Kind::Invoke | Kind::Command))
            .map(|r| Got {
                device: r.device.to_string(),
                invoke: r.kind == Kind::Invoke,
                id: r.id.clone(),
                nonce: serde_json::from_slice::<Value>(&r.payload)
                    .ok()
                    .and_then(|v| v.get("nonce").and_then(Value::as_str).map(str::to_owned)),
            })
            .collect(),
        answered: sent
            .iter()
            .filter(|s| s.kind != Kind::Job)
            .map(|s| answered(clock, s))
            .collect(),
        job_updates: sent
            .iter()
            .filter(|s| s.kind == Kind::Job)
            .map(|s| answered(clock, s))
            .collect(),
        jobs_taken: received
            .iter()
            .filter(|r| r.kind == Kind::Job)
            .map(|r| (r.device.to_string(), r.id.clone()))
            .collect(),
        rejected: received
            .iter()
            .filter(|r| r.kind == Kind::Rejected)
            .map(|r| r.id.clone())
            .collect(),
        ..Observed::default()
    }
}

fn answered(clock: &Clock, sent: &tether_device::Sent) -> Answered {
    Answered {
        device: sent.device.to_string(),
        invoke: sent.kind == Kind::Invoke,
        id: sent.id.clone(),
        status: sent.status.to_owned(),
        at: clock.at(sent.at),
    }
}

/// A job's executions as `GET /jobs/{jobId}/executions` lists them (its targets fit one page).
fn job_executions(job_id: &str, page: &Value) -> Vec<JobExecution> {
    let text = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    page.get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|item| JobExecution {
            job_id: job_id.to_owned(),
            device: text(item, "deviceId"),
            status: text(item, "status"),
            timeline: item
                .get("timeline")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|entry| text(entry, "status"))
                .collect(),
        })
        .collect()
}

/// Reads every invocation and execution record whose id was seen anywhere, and the executions
/// of every job created.
async fn read_records(api: &str, observed: &mut Observed) -> anyhow::Result<()> {
    let mut invocations = BTreeSet::new();
    let mut executions = BTreeSet::new();
    for call in &observed.calls {
        if let (200 | 504, Some(id)) = (call.http.status, &call.request_id) {
            invocations.insert(id.clone());
        }
    }
    for run in &observed.runs {
        executions.extend(run.executions.iter().filter_map(|e| e.execution_id.clone()));
    }
    for (invoke, id) in observed
        .got
        .iter()
        .map(|g| (g.invoke, &g.id))
        .chain(observed.answered.iter().map(|a| (a.invoke, &a.id)))
    {
        if invoke {
            invocations.insert(id.clone());
        } else {
            executions.insert(id.clone());
        }
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let read = |path: String| {
        let http = http.clone();
        async move {
            let response = http.get(&path).send().await?;
            let status = response.status().as_u16();
            let body = response.json::<Value>().await.unwrap_or(Value::Null);
            anyhow::Ok(Record { status, body })
        }
    };
    for id in invocations {
        let record = read(format!("{api}/invocations/{id}")).await?;
        observed.invocations.insert(id, record);
    }
    for id in executions {
        let record = read(format!("{api}/executions/{id}")).await?;
        observed.executions.insert(id, record);
    }
    let job_ids: Vec<String> = observed
        .jobs
        .iter()
        .filter_map(|j| j.job_id.clone())
        .collect();
    for id in job_ids {
        let record = read(format!("{api}/jobs/{id}/executions?limit=100")).await?;
        let executions = match record.status {
            200 => job_executions(&id, &record.body),
            _ => Vec::new(),
        };
        observed.job_executions.insert(id, executions);
    }
    Ok(())
}
