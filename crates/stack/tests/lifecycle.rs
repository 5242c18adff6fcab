//! Every way of stopping `tether-local` (`make run`, `make demo`) stops every process it
//! started: SIGTERM to it, SIGTERM to its whole process group (what `kill -- -PGID`, `timeout`,
//! CI runners and service managers send), a signal while it is still starting, and its own
//! sudden death (SIGKILL, which no handler sees).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

/// Parent and process group of every process, from `/proc`.
fn processes() -> Vec<(u32, u32, u32)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue; // a zombie has ended; only its parent's wait is missing
        }
        if let (Some(ppid), Some(pgrp)) = (
            fields.get(1).and_then(|f| f.parse().ok()),
            fields.get(2).and_then(|f| f.parse().ok()),
        ) {
            all.push((pid, ppid, pgrp));
        }
    }
    all
}

/// `root` and every process below it.
fn descendants(root: u32) -> BTreeSet<u32> {
    let all = processes();
    let mut found = BTreeSet::from([root]);
    loop {
        let before = found.len();
        for (pid, ppid, _) in &all {
            if found.contains(ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

fn alive(pids: &BTreeSet<u32>) -> BTreeSet<u32> {
    let running: BTreeSet<u32> = processes().into_iter().map(|(pid, _, _)| pid).collect();
    pids.intersection(&running).copied().collect()
}

fn signal(name: &str, target: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), "--", target])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {target}");
}

/// `tether-local` on free ports with no devices and no demo, in a process group of its own,
/// keeping its state in `state`.
fn start(state: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tether-local"))
        .args(["--root", &common::root().display().to_string()])
        .args(["--api-port", "0", "--mqtt-port", "0", "--iot-port", "0"])
        .args(["--devices", "0", "--no-demo", "--no-reload"])
        .arg("--state-dir")
        .arg(state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap()
}

/// Waits until the stack has written its env file (every part answers).
fn wait_ready(stack: &mut Child, state: &Path) {
    let until = Instant::now() + Duration::from_secs(600);
    while !state.join("stack.env").exists() {
        assert!(
            stack.try_wait().unwrap().is_none(),
            "tether-local exited while starting"
        );
        assert!(Instant::now() < until, "tether-local was not ready in time");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for every process in `pids` to end.
fn all_gone(pids: &BTreeSet<u32>, within: Duration) -> Result<(), String> {
    let until = Instant::now() + within;
    loop {
        let left = alive(pids);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(format!("still running after {within:?}: {left:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

enum Stop {
    Process,
    Group,
    ParentDies,
    WhileStarting,
}

fn stops_everything(how: Stop, name: &str) -> Result<(), String> {
    let state = common::log_dir(&format!("lifecycle-{name}"));
    let mut stack = start(&state);
    let pid = stack.id();
    match how {
        Stop::WhileStarting => {
            // Long enough for the functions' build and watcher to be under way.
            let until = Instant::now() + Duration::from_secs(60);
            while descendants(pid).len() < 3 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        _ => wait_ready(&mut stack, &state),
    }
    let started = descendants(pid);
    if started.len() < 3 {
        let _ = stack.kill();
        return Err(format!(
            "expected the watcher and its guard below tether-local: {started:?}"
        ));
    }
    match how {
        Stop::Process | Stop::WhileStarting => signal("TERM", &pid.to_string()),
        Stop::Group => signal("TERM", &format!("-{pid}")),
        Stop::ParentDies => signal("KILL", &pid.to_string()),
    }
    let _ = stack.wait();
    let outcome = all_gone(&started, Duration::from_secs(30));
    if outcome.is_err() {
        // Do not leave them behind for the next test.
        for pid in alive(&started) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    } else {
        let _ = std::fs::remove_dir_all(&state);
    }
    outcome
}

#[test]
fn every_way_of_stopping_the_stack_stops_every_process_it_started() {
    // Four stacks on free ports, side by side, each stopped its own way.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = [
            (Stop::Process, "sigterm"),
            (Stop::Group, "group-sigterm"),
            (Stop::WhileStarting, "sigterm-while-starting"),
            (Stop::ParentDies, "sigkill"),
        ]
        .into_iter()
        .map(|(how, name)| {
            scope.spawn(move || stops_everything(how, name).map_err(|e| format!("{name}: {e}")))
        })
        .collect();
        runs.into_iter()
            .filter_map(|run| run.join().unwrap().err())
            .collect()
    });
    assert!(failures.is_empty(), "{failures:#?}");
}
