//! Where the CPU goes while the stack is under load: user and system time from `/proc`, per
//! function process, for `cargo lambda watch`, and per thread group of the harness process
//! (the embedded DynamoDB endpoint's threads; the rest: the local API gateway, local-iot with
//! its broker and rule engine, the simulated devices and the load generator).

use std::collections::BTreeMap;

const PROCESSES: [&str; 6] = [
    "invoke",
    "ingest",
    "redrive",
    "status",
    "commands",
    "cargo-lambda",
];

/// CPU seconds used so far, by part.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(BTreeMap<String, f64>);

/// `(comm, utime + stime in seconds)` of one `/proc/.../stat`.
fn read_stat(path: &std::path::Path) -> Option<(String, f64)> {
    tether_stack::procs::stat(path).map(|s| (s.name, s.cpu_seconds))
}

pub fn snapshot() -> Snapshot {
    let mut parts = BTreeMap::new();
    for pid in tether_stack::procs::pids() {
        if let Some((comm, seconds)) = read_stat(std::path::Path::new(&format!("/proc/{pid}/stat")))
        {
            if PROCESSES.contains(&comm.as_str()) {
                *parts.entry(format!("{comm} (process)")).or_insert(0.0) += seconds;
            }
        }
    }
    for entry in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Some((comm, seconds)) = read_stat(&entry.path().join("stat")) {
            let part = if comm.starts_with("local-dynamodb") {
                "local DynamoDB endpoint (threads)"
            } else {
                "gateway, local-iot, devices, load generator (threads)"
            };
            *parts.entry(part.to_owned()).or_insert(0.0) += seconds;
        }
    }
    Snapshot(parts)
}

/// Each part's share of the CPU time used between two snapshots (processes that ended in
/// between are missed), and the total in seconds.
pub fn shares(before: &Snapshot, after: &Snapshot) -> (Vec<(String, f64)>, f64) {
    let used: Vec<(String, f64)> = after
        .0
        .iter()
        .map(|(part, seconds)| {
            let earlier = before.0.get(part).copied().unwrap_or(0.0);
            (part.clone(), (seconds - earlier).max(0.0))
        })
        .collect();
    let total: f64 = used.iter().map(|(_, s)| s).sum();
    let mut shares: Vec<(String, f64)> = used
        .into_iter()
        .map(|(part, s)| (part, if total > 0.0 { 100.0 * s / total } else { 0.0 }))
        .collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    (shares, total)
}
