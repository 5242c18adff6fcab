//! The local stack's processes as `/proc` shows them: one reader of `/proc/{pid}/stat` (name,
//! parent, CPU time; the benchmark's CPU shares use it too), and the memory and open files of
//! this process (the gateway, local-iot, the DynamoDB endpoint and the devices run in it) and
//! every process below it (`cargo lambda watch` and the functions it runs), which the soak
//! samples.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

/// Linux's clock tick for `/proc` times (`USER_HZ`, 100 on every mainstream architecture).
const TICKS_PER_SECOND: f64 = 100.0;

/// What one `/proc/{pid}/stat` (or `/proc/{pid}/task/{tid}/stat`) says.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    /// The command name (`comm`).
    pub name: String,
    pub parent: u32,
    /// User and system time so far.
    pub cpu_seconds: f64,
}

/// Reads a stat file: `pid (comm) state ppid … utime stime …`; comm may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
pub fn stat(path: &Path) -> Option<Stat> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After `)`: state(0) ppid(1) pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime(11) stime(12).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        name: text[open + 1..close].to_owned(),
        parent: fields.get(1)?.parse().ok()?,
        cpu_seconds: (utime + stime) / TICKS_PER_SECOND,
    })
}

/// The numeric entries of `/proc`: every process's id.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

/// One look at the processes, summed by process name.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the soak started.
    pub at: f64,
    /// Name → (resident KiB, open file descriptors, processes).
    pub by_name: BTreeMap<String, (u64, u64, u64)>,
}

/// How a process group's memory and descriptors moved between warm-up and the end.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    pub name: String,
    pub rss_kib_after_warmup: u64,
    pub rss_kib_at_end: u64,
    /// (end − after warm-up) / after warm-up.
    pub rss_drift: f64,
    pub fds_after_warmup: u64,
    pub fds_at_end: u64,
}

fn children_of(root: u32) -> Vec<u32> {
    let parent_of: Vec<(u32, u32)> = pids()
        .into_iter()
        .filter_map(|pid| Some((pid, stat(Path::new(&format!("/proc/{pid}/stat")))?.parent)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// This process and everything below it, now.
pub fn sample(at: f64) -> Sample {
    let mut by_name: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for pid in children_of(std::process::id()) {
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|n| n.trim().to_owned())
            .unwrap_or_default();
        let (Some(rss), Some(fds)) = (rss_kib(pid), open_fds(pid)) else {
            continue; // gone meanwhile
        };
        let entry = by_name.entry(name).or_default();
        entry.0 += rss;
        entry.1 += fds;
        entry.2 += 1;
    }
    Sample { at, by_name }
}

fn mean(values: &[u64]) -> u64 {
    if values.is_empty() {
        0
    } else {
        values.iter().sum::<u64>() / values.len() as u64
    }
}

/// Per process name: the mean over the samples after warm-up (the first quarter of the run
/// left out, the second quarter averaged) against the mean of the last quarter. Names not
/// present throughout (a build step, a short-lived helper) are left out.
pub fn drift(samples: &[Sample]) -> Vec<Drift> {
    let n = samples.len();
    if n < 4 {
        return Vec::new();
    }
    let (warm, end) = (&samples[n / 4..n / 2], &samples[n - n / 4..]);
    let names: Vec<&String> = samples[0]
        .by_name
        .keys()
        .filter(|name| samples.iter().all(|s| s.by_name.contains_key(*name)))
        .collect();
    names
        .into_iter()
        .map(|name| {
            let of = |part: &[Sample], pick: fn(&(u64, u64, u64)) -> u64| {
                mean(
                    &part
                        .iter()
                        .map(|s| pick(&s.by_name[name]))
                        .collect::<Vec<_>>(),
                )
            };
            let (rss_warm, rss_end) = (of(warm, |v| v.0), of(end, |v| v.0));
            Drift {
                name: name.clone(),
                rss_kib_after_warmup: rss_warm,
                rss_kib_at_end: rss_end,
                rss_drift: if rss_warm == 0 {
                    0.0
                } else {
                    (rss_end as f64 - rss_warm as f64) / rss_warm as f64
                },
                fds_after_warmup: of(warm, |v| v.1),
                fds_at_end: of(end, |v| v.1),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_stat_names_it_and_its_parent() {
        let own = stat(Path::new("/proc/self/stat")).unwrap();
        assert_eq!(own.parent, std::os::unix::process::parent_id());
        assert!(!own.name.is_empty());
        assert!(own.cpu_seconds >= 0.0);
    }

    #[test]
    fn this_process_is_sampled() {
        let sample = sample(0.0);
        let total: u64 = sample.by_name.values().map(|v| v.0).sum();
        assert!(total > 0, "{sample:?}");
        assert!(sample.by_name.values().any(|v| v.1 > 0), "{sample:?}");
    }

    #[test]
    fn drift_compares_the_end_with_after_warm_up() {
        let samples: Vec<Sample> = (0..8)
            .map(|i| Sample {
                at: f64::from(i),
                by_name: [
                    ("steady".to_owned(), (1000, 10, 1)),
                    (
                        "growing".to_owned(),
                        (1000 + 100 * i as u64, 10 + i as u64, 1),
                    ),
                ]
                .into(),
            })
            .collect();
        let drift = drift(&samples);
        let steady = drift.iter().find(|d| d.name == "steady").unwrap();
        assert_eq!(steady.rss_drift, 0.0);
        let growing = drift.iter().find(|d| d.name == "growing").unwrap();
        // warm-up: samples 2,3 (1250 mean); end: samples 6,7 (1650 mean)
        assert_eq!(
            (growing.rss_kib_after_warmup, growing.rss_kib_at_end),
            (1250, 1650)
        );
        assert!((growing.rss_drift - 0.32).abs() < 1e-9);
        assert_eq!((growing.fds_after_warmup, growing.fds_at_end), (12, 16));
    }
}
