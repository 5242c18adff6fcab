//! What a soak run saw: every call it made and what came back, the faults it injected and
//! when, what the devices received and sent, and the records and dead letters at the end.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// An answer from the API, or none (`status` 0: the connection failed or timed out).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Http {
    pub status: u16,
    pub code: Option<String>,
    pub retry_after: bool,
    /// Seconds since the soak started.
    pub started: f64,
    pub ended: f64,
}

/// One `POST /devices/{id}/invoke`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub device: String,
    pub method: String,
    /// Sent in the payload (`{"nonce": …}`); the echo behaviour answers it back. Calls that
    /// share an Idempotency-Key share it.
    pub nonce: String,
    pub key: Option<String>,
    pub timeout_ms: u64,
    pub http: Http,
    pub request_id: Option<String>,
    /// The answer's `status` (200 and 504 answers).
    pub answered: Option<String>,
    /// The answer's `result.nonce`.
    pub echoed: Option<String>,
}

/// One execution a `POST /commands/{id}/executions` started (or refused for a target).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub target: String,
    pub execution_id: Option<String>,
    /// The status the answer gave after waiting.
    pub status: Option<String>,
    pub error: Option<String>,
}

/// One Commands fan-out.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub command: String,
    pub targets: Vec<String>,
    pub http: Http,
    pub executions: Vec<Started>,
}

/// One `POST /jobs`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRun {
    /// The id the API gave the job (201 answers).
    pub job_id: Option<String>,
    /// Its id in AWS IoT (from its ARN: the scope's prefix and the API id), which devices and
    /// job events name.
    pub aws_job_id: Option<String>,
    /// The document's `operation`: the behaviour the devices run it with.
    pub operation: String,
    /// The final status that behaviour reports.
    pub expected: String,
    pub targets: Vec<String>,
    pub http: Http,
}

/// One execution of a job, read at the end (`GET /jobs/{jobId}/executions`): the status AWS IoT
/// (local-iot) holds, and the statuses of the timeline `ingest` recorded from the job events.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobExecution {
    pub job_id: String,
    pub device: String,
    pub status: String,
    pub timeline: Vec<String>,
}

/// One read of the API (records, presence, lists).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Read {
    pub path: String,
    pub http: Http,
}

/// A fault and how long it lasted (seconds since the soak started).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub kind: &'static str,
    pub start: f64,
    pub end: f64,
    /// Whether callers may see 503s while it lasts (the store or the broker away); a device
    /// flap is not an outage of Tether.
    pub outage: bool,
}

/// A message a device received: a direct-invocation request or a Commands request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Got {
    pub device: String,
    pub invoke: bool,
    /// The request id or the execution id.
    pub id: String,
    /// The payload's `nonce`, for direct invocations.
    pub nonce: Option<String>,
}

/// An answer a device sent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answered {
    pub device: String,
    pub invoke: bool,
    pub id: String,
    pub status: String,
    /// Seconds since the soak started.
    pub at: f64,
}

/// A record read once everything had settled: its HTTP status and body.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub status: u16,
    pub body: Value,
}

impl Record {
    pub fn state(&self) -> Option<&str> {
        self.body.get("status").and_then(Value::as_str)
    }
}

/// Everything the invariants are checked against.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    pub calls: Vec<Call>,
    pub runs: Vec<Run>,
    pub jobs: Vec<JobRun>,
    pub reads: Vec<Read>,
    pub windows: Vec<Window>,
    pub got: Vec<Got>,
    pub answered: Vec<Answered>,
    /// The job execution updates devices sent (`id`: the job id), logged once the broker
    /// acknowledged them.
    pub job_updates: Vec<Answered>,
    /// The job executions devices took on: (device, job id).
    pub jobs_taken: Vec<(String, String)>,
    /// Execution ids whose response the cloud rejected (the device was told).
    pub rejected: Vec<String>,
    /// `GET /invocations/{id}` at the end, for every request id seen anywhere.
    pub invocations: BTreeMap<String, Record>,
    /// `GET /executions/{id}` at the end, for every execution id seen anywhere.
    pub executions: BTreeMap<String, Record>,
    /// The executions of every job the API created, read at the end; a job whose executions
    /// could not be read is listed with none.
    pub job_executions: BTreeMap<String, Vec<JobExecution>>,
    /// Dead letters left after the last replay.
    pub dead_letters: Vec<Value>,
}

impl Observed {
    /// Every HTTP answer the soak got, with what it was for.
    pub fn answers(&self) -> impl Iterator<Item = (String, &Http)> {
        let calls = self
            .calls
            .iter()
            .map(|c| (format!("invoke {} {}", c.device, c.method), &c.http));
        let runs = self
            .runs
            .iter()
            .map(|r| (format!("run {}", r.command), &r.http));
        let jobs = self
            .jobs
            .iter()
            .map(|j| (format!("job {}", j.operation), &j.http));
        let reads = self
            .reads
            .iter()
            .map(|r| (format!("GET {}", r.path), &r.http));
        calls.chain(runs).chain(jobs).chain(reads)
    }
}
