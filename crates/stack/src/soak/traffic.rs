//! The soak's callers: workers that keep the API busy with direct invocations of every
//! behaviour (answers, failures, rejections, silence, late replies; some with an
//! Idempotency-Key sent twice at once or retried after a 503), Commands fan-outs that wait,
//! and reads of what was recorded. Every call and its answer is logged for the invariants.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::observed::{Call, Http, JobRun, Read, Run, Started};
use super::Clock;

/// The methods a direct invocation asks for (the stack's default behaviours), how often
/// (weights), and the deadline each gets.
const METHODS: [(&str, u32, u64); 6] = [
    ("ping", 55, 3000),
    ("slow", 10, 3000),
    ("late", 10, 1000),
    ("fail", 8, 3000),
    ("reject", 7, 3000),
    ("silent", 10, 1000),
];

/// The operations a job's document names (the stack's default behaviours), each with the final
/// update the device sends.
const JOB_OPERATIONS: [(&str, &str); 4] = [
    ("ping", "SUCCEEDED"),
    ("slow", "SUCCEEDED"),
    ("fail", "FAILED"),
    ("reject", "REJECTED"),
];

/// What the workers logged.
#[derive(Default)]
pub struct Log {
    pub calls: Vec<Call>,
    pub runs: Vec<Run>,
    pub jobs: Vec<JobRun>,
    pub reads: Vec<Read>,
    /// Request ids seen, for reads.
    invocations: Vec<String>,
    /// Execution ids seen, for reads.
    executions: Vec<String>,
    /// Job ids created, for reads.
    job_ids: Vec<String>,
}

pub struct Traffic {
    api: String,
    http: reqwest::Client,
    clock: Clock,
    devices: Vec<String>,
    flappers: Vec<String>,
    /// The commands the fan-outs start.
    commands: Vec<String>,
    nonces: AtomicU64,
    pub log: Mutex<Log>,
}

/// The API's answer: status, body, and the `Http` entry for the log.
struct Answer {
    body: Value,
    http: Http,
}

fn pick<'a, T>(rng: &mut fastrand::Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

/// `n` different devices at random (`devices` holds at least `n`).
fn distinct(rng: &mut fastrand::Rng, devices: &[String], n: usize) -> Vec<String> {
    let mut chosen: Vec<String> = Vec::with_capacity(n);
    while chosen.len() < n {
        let device = pick(rng, devices);
        if !chosen.contains(device) {
            chosen.push(device.clone());
        }
    }
    chosen
}

impl Traffic {
    pub fn new(
        api: &str,
        clock: Clock,
        devices: Vec<String>,
        flappers: Vec<String>,
        commands: Vec<String>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            api: api.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(40))
                .build()?,
            clock,
            devices,
            flappers,
            commands,
            nonces: AtomicU64::new(0),
            log: Mutex::new(Log::default()),
        })
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send(&self, path: &str, body: Option<&Value>, key: Option<&str>) -> Answer {
        let started = self.clock.now();
        let url = format!("{}{path}", self.api);
        let mut request = match body {
            Some(body) => self.http.post(&url).json(body),
            None => self.http.get(&url),
        };
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let (status, retry_after, body) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                (status, retry_after, body)
            }
            Err(err) => {
                tracing::warn!(%url, error = %err, "no answer");
                (0, false, Value::Null)
            }
        };
        let code = body.get("code").and_then(Value::as_str).map(str::to_owned);
        Answer {
            http: Http {
                status,
                code,
                retry_after,
                started,
                ended: self.clock.now(),
            },
            body,
        }
    }

    /// Calls, fan-outs and reads until `until`, one at a time, with short random pauses.
    pub async fn worker(&self, seed: u64, until: Instant) {
        let mut rng = fastrand::Rng::with_seed(seed);
        while Instant::now() < until {
            match rng.u32(..100) {
                0..70 => self.invoke(&mut rng).await,
                70..78 => self.fan_out(&mut rng).await,
                78..82 => self.job(&mut rng).await,
                _ => self.read(&mut rng).await,
            }
            tokio::time::sleep(Duration::from_millis(rng.u64(..50))).await;
        }
    }

    async fn invoke(&self, rng: &mut fastrand::Rng) {
        let flapper = !self.flappers.is_empty() && rng.u32(..100) < 15;
        let (device, (method, _, timeout_ms)) = if flapper {
            (pick(rng, &self.flappers), METHODS[0])
        } else {
            let mut roll = rng.u32(..METHODS.iter().map(|m| m.1).sum::<u32>());
            let chosen = METHODS
                .iter()
                .find(|m| {
                    let hit = roll < m.1;
                    roll = roll.saturating_sub(m.1);
                    hit
                })
                .copied()
                .unwrap_or(METHODS[0]);
            (pick(rng, &self.devices), chosen)
        };
        let n = self.nonces.fetch_add(1, Ordering::Relaxed);
        let nonce = format!("n{n}");
        let key = (rng.u32(..100) < 20).then(|| format!("soak-{nonce}"));
        let body = json!({"method": method, "payload": {"nonce": nonce}, "timeoutMs": timeout_ms});
        let call = |key: Option<String>| {
            let (device, body, nonce) = (device.clone(), body.clone(), nonce.clone());
            async move {
                let path = format!("/devices/{device}/invoke");
                let answer = self.send(&path, Some(&body), key.as_deref()).await;
                let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
                Call {
                    device,
                    method: method.to_owned(),
                    nonce,
                    key,
                    timeout_ms,
                    request_id: text(answer.body.get("requestId")),
                    answered: text(answer.body.get("status")),
                    echoed: text(answer.body.pointer("/result/nonce")),
                    http: answer.http,
                }
            }
        };
        let calls = match &key {
            // The same key twice at once: one device request, two equal answers.
            Some(_) if rng.bool() => {
                let (a, b) = tokio::join!(call(key.clone()), call(key.clone()));
                vec![a, b]
            }
            // A retry after a 503, as a client following Retry-After would.
            Some(_) => {
                let first = call(key.clone()).await;
                if first.http.status == 503 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    vec![first, call(key.clone()).await]
                } else {
                    vec![first]
                }
            }
            None => vec![call(None).await],
        };
        let mut log = self.log();
        log.invocations
            .extend(calls.iter().filter_map(|c| c.request_id.clone()));
        log.calls.extend(calls);
    }

    async fn fan_out(&self, rng: &mut fastrand::Rng) {
        if self.commands.is_empty() || self.devices.len() < 5 {
            return;
        }
        let command = pick(rng, &self.commands).clone();
        let targets = distinct(rng, &self.devices, 5);
        let body = json!({"targets": targets, "timeoutSeconds": 10, "waitMs": 5000});
        let answer = self
            .send(
                &format!("/commands/{command}/executions"),
                Some(&body),
                None,
            )
            .await;
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let executions: Vec<Started> = answer
            .body
            .get("executions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| Started {
                target: text(e, "target").unwrap_or_default(),
                execution_id: text(e, "executionId"),
                status: text(e, "status"),
                error: e.get("error").and_then(|err| text(err, "code")),
            })
            .collect();
        let mut log = self.log();
        log.executions
            .extend(executions.iter().filter_map(|e| e.execution_id.clone()));
        log.runs.push(Run {
            command,
            targets,
            http: answer.http,
            executions,
        });
    }

    /// Creates a job for three steady devices and, every other time, a flapping one (which
    /// may be offline: the job waits for it).
    async fn job(&self, rng: &mut fastrand::Rng) {
        if self.devices.len() < 3 {
            return;
        }
        let (operation, expected) = *pick(rng, &JOB_OPERATIONS);
        let mut targets = distinct(rng, &self.devices, 3);
        if !self.flappers.is_empty() && rng.bool() {
            targets.push(pick(rng, &self.flappers).clone());
        }
        let body = json!({"targets": targets, "document": {"operation": operation}});
        let answer = self.send("/jobs", Some(&body), None).await;
        let job_id = (answer.http.status == 201)
            .then(|| answer.body.get("jobId").and_then(Value::as_str))
            .flatten()
            .map(str::to_owned);
        let aws_job_id = answer
            .body
            .get("jobArn")
            .and_then(Value::as_str)
            .and_then(|arn| arn.rsplit_once(":job/"))
            .map(|(_, id)| id.to_owned());
        let mut log = self.log();
        log.job_ids.extend(job_id.clone());
        log.jobs.push(JobRun {
            job_id,
            aws_job_id,
            operation: operation.to_owned(),
            expected: expected.to_owned(),
            targets,
            http: answer.http,
        });
    }

    async fn read(&self, rng: &mut fastrand::Rng) {
        let device = pick(rng, &self.devices);
        let path = {
            let log = self.log();
            match rng.u32(..5) {
                3 if !log.job_ids.is_empty() => format!("/jobs/{}", pick(rng, &log.job_ids)),
                0 if !log.executions.is_empty() => {
                    format!("/executions/{}", pick(rng, &log.executions))
                }
                1 if !log.invocations.is_empty() => {
                    format!("/invocations/{}", pick(rng, &log.invocations))
                }
                2 => format!("/devices/{device}/executions"),
                _ => format!("/devices/{device}"),
            }
        };
        let answer = self.send(&path, None, None).await;
        self.log().reads.push(Read {
            path,
            http: answer.http,
        });
    }
}
