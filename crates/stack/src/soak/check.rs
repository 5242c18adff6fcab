//! The soak's invariants, checked over what it observed. No I/O: the unit tests below feed it
//! made-up observations, a broken build's among them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::observed::{Http, Observed, Record};

/// How long after a fault ends its 503s may still arrive (a call that began in it).
pub const OUTAGE_SLACK: f64 = 2.0;

const FINAL: [&str; 4] = ["SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT"];

/// The invariants, by the name a violation carries.
pub const INVARIANTS: [(&str, &str); 8] = [
    (
        "no-server-error",
        "no 500 ever, and a 503 (with Retry-After) only while a fault lasts",
    ),
    (
        "final-status",
        "every invocation and execution ended in a final status",
    ),
    (
        "recorded-before-sent",
        "a device never got a request that has no record",
    ),
    (
        "answer-is-recorded",
        "what the API answered is what the record says",
    ),
    ("own-answer", "no caller got another call's answer"),
    (
        "nothing-lost",
        "every answer a device sent is in its record or in the dead letters",
    ),
    (
        "ran-once",
        "no device ran the same request (one call, or one Idempotency-Key) twice",
    ),
    (
        "job-final",
        "every job execution ended in the final status its device reported (or, if the device's \
         last update went unacknowledged, the one its behaviour reports), and that status is in \
         its recorded timeline (or in the dead letters)",
    ),
];

/// A job execution's final statuses (what a device's last update can make it).
const JOB_FINAL: [&str; 3] = ["SUCCEEDED", "FAILED", "REJECTED"];

/// One invariant broken, with what broke it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation { invariant, detail }
}

/// Checks every invariant; the violations, in the order of [`INVARIANTS`].
pub fn check(observed: &Observed) -> Vec<Violation> {
    let mut found = Vec::new();
    found.extend(server_errors(observed));
    found.extend(final_statuses(observed));
    found.extend(answers_recorded(observed));
    found.extend(own_answers(observed));
    found.extend(nothing_lost(observed));
    found.extend(ran_once(observed));
    found.extend(jobs_final(observed));
    found
}

fn in_outage(observed: &Observed, http: &Http) -> bool {
    observed
        .windows
        .iter()
        .any(|w| w.outage && http.started <= w.end + OUTAGE_SLACK && http.ended >= w.start)
}

fn server_errors(observed: &Observed) -> Vec<Violation> {
    let mut found = Vec::new();
    for (what, http) in observed.answers() {
        let at = format!("{what} at {:.1}s", http.started);
        let wrong = match http.status {
            0 => Some(format!("{at}: no answer (connection failed or timed out)")),
            503 if !http.retry_after => Some(format!("{at}: 503 without Retry-After")),
            503 if !in_outage(observed, http) => Some(format!(
                "{at}: 503 {} outside every fault",
                http.code.as_deref().unwrap_or("")
            )),
            503 | 504 => None,
            s if s >= 500 => Some(format!("{at}: {s} {}", http.code.as_deref().unwrap_or(""))),
            _ => None,
        };
        found.extend(wrong.map(|d| violation("no-server-error", d)));
    }
    found
}

fn final_statuses(observed: &Observed) -> Vec<Violation> {
    let mut found = Vec::new();
    let kinds = [
        ("invocation", &observed.invocations),
        ("execution", &observed.executions),
    ];
    for (kind, records) in kinds {
        for (id, record) in records {
            match (record.status, record.state()) {
                (200, Some(s)) if FINAL.contains(&s) => {}
                (404, _) if kind == "invocation" => found.push(violation(
                    "recorded-before-sent",
                    format!("invocation {id} reached a device but has no record"),
                )),
                (status, state) => found.push(violation(
                    "final-status",
                    format!("{kind} {id}: {status} {}", state.unwrap_or("(no status)")),
                )),
            }
        }
    }
    found
}

/// The last answer each device sent per request or execution id: (status, invoke?).
fn last_sent(observed: &Observed) -> BTreeMap<&str, (&str, bool)> {
    observed
        .answered
        .iter()
        .map(|a| (a.id.as_str(), (a.status.as_str(), a.invoke)))
        .collect()
}

/// Where the soak stood at `at`: in which fault, or how long after the last one.
fn when(observed: &Observed, at: f64) -> String {
    let last = observed.windows.iter().rfind(|w| w.start <= at);
    match last {
        Some(w) if at <= w.end => format!("at {at:.1}s, during {}", w.kind),
        Some(w) => format!("at {at:.1}s, {:.1}s after {}", at - w.end, w.kind),
        None => format!("at {at:.1}s, before any fault"),
    }
}

fn answers_recorded(observed: &Observed) -> Vec<Violation> {
    let sent = last_sent(observed);
    let mut found = Vec::new();
    // A 200 is final: the record must say the same. (A 504 may be replaced by a late reply.)
    let mut compare = |kind: &str, id: &str, answered: &str, record: Option<&Record>| {
        let recorded = record.and_then(Record::state);
        let replaced_by_device = sent.get(id).map(|(s, _)| *s) == recorded;
        if recorded != Some(answered) && !(answered == "TIMED_OUT" && replaced_by_device) {
            found.push(violation(
                "answer-is-recorded",
                format!(
                    "{kind} {id}: answered {answered}, recorded {}",
                    recorded.unwrap_or("nothing")
                ),
            ));
        }
    };
    for call in &observed.calls {
        if let (200, Some(id), Some(answered)) =
            (call.http.status, &call.request_id, &call.answered)
        {
            compare("invocation", id, answered, observed.invocations.get(id));
        }
    }
    for run in observed.runs.iter().filter(|r| r.http.status == 200) {
        for started in &run.executions {
            if let (Some(id), Some(answered)) = (&started.execution_id, &started.status) {
                if FINAL.contains(&answered.as_str()) {
                    compare("execution", id, answered, observed.executions.get(id));
                }
            }
        }
    }
    found
}

fn own_answers(observed: &Observed) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut per_key: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for call in observed.calls.iter().filter(|c| c.http.status == 200) {
        if let Some(echoed) = call.echoed.as_deref().filter(|e| *e != call.nonce) {
            found.push(violation(
                "own-answer",
                format!(
                    "invoke {} {} (nonce {}) got the answer to nonce {echoed}",
                    call.device, call.method, call.nonce
                ),
            ));
        }
        if let (Some(key), Some(id)) = (&call.key, &call.request_id) {
            per_key.entry(key).or_default().insert(id);
        }
    }
    for (key, ids) in per_key.into_iter().filter(|(_, ids)| ids.len() > 1) {
        found.push(violation(
            "own-answer",
            format!(
                "Idempotency-Key {key} answered as {} calls: {ids:?}",
                ids.len()
            ),
        ));
    }
    found
}

fn nothing_lost(observed: &Observed) -> Vec<Violation> {
    let dead: Vec<String> = observed
        .dead_letters
        .iter()
        .map(|letter| letter.to_string())
        .collect();
    let rejected: BTreeSet<&str> = observed.rejected.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    for (id, (status, invoke)) in last_sent(observed) {
        // Progress is not an answer; a response the cloud refused was told to the device.
        if !FINAL.contains(&status) || (!invoke && rejected.contains(id)) {
            continue;
        }
        let records = if invoke {
            &observed.invocations
        } else {
            &observed.executions
        };
        let recorded = records.get(id).and_then(Record::state);
        if recorded != Some(status) && !dead.iter().any(|letter| letter.contains(id)) {
            let (device, at) = observed
                .answered
                .iter()
                .rfind(|a| a.id == id)
                .map_or(("?", 0.0), |a| (a.device.as_str(), a.at));
            found.push(violation(
                "nothing-lost",
                format!(
                    "{device} answered {} {id} with {status} {}; recorded {}, not in the dead letters",
                    if invoke { "invocation" } else { "execution" },
                    when(observed, at),
                    recorded.unwrap_or("nothing"),
                ),
            ));
        }
    }
    found
}

fn ran_once(observed: &Observed) -> Vec<Violation> {
    let mut per_nonce: BTreeMap<&str, BTreeSet<(&str, &str)>> = BTreeMap::new();
    for got in observed.got.iter().filter(|g| g.invoke) {
        if let Some(nonce) = &got.nonce {
            per_nonce
                .entry(nonce)
                .or_default()
                .insert((got.device.as_str(), got.id.as_str()));
        }
    }
    per_nonce
        .into_iter()
        .filter(|(_, requests)| requests.len() > 1)
        .map(|(nonce, requests)| {
            violation(
                "ran-once",
                format!(
                    "the call with nonce {nonce} reached devices as {} requests: {requests:?}",
                    requests.len()
                ),
            )
        })
        .collect()
}

fn jobs_final(observed: &Observed) -> Vec<Violation> {
    // The last final update each device sent for each job.
    let reported: BTreeMap<(&str, &str), &str> = observed
        .job_updates
        .iter()
        .filter(|u| JOB_FINAL.contains(&u.status.as_str()))
        .map(|u| ((u.id.as_str(), u.device.as_str()), u.status.as_str()))
        .collect();
    let dead: Vec<String> = observed
        .dead_letters
        .iter()
        .map(|l| l.to_string())
        .collect();
    let mut found = Vec::new();
    for run in &observed.jobs {
        let (Some(job), Some(aws_id)) = (&run.job_id, &run.aws_job_id) else {
            continue;
        };
        let executions = observed
            .job_executions
            .get(job)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for device in &run.targets {
            let what = format!("job {job} ({}) on {device}", run.operation);
            let Some(execution) = executions.iter().find(|e| &e.device == device) else {
                found.push(violation("job-final", format!("{what}: no execution")));
                continue;
            };
            let status = execution.status.as_str();
            // An update is logged once the broker acknowledges it; one sent as the connection
            // dropped may have been applied unacknowledged. Then the device's behaviour says
            // what it sent, if it took the job on.
            let taken = observed
                .jobs_taken
                .iter()
                .any(|(d, j)| d == device && j == aws_id);
            let expected = reported
                .get(&(aws_id.as_str(), device.as_str()))
                .copied()
                .or(taken.then_some(run.expected.as_str()));
            if expected != Some(status) {
                found.push(violation(
                    "job-final",
                    format!(
                        "{what}: {status}, its device reported {}{}",
                        expected.unwrap_or("nothing final"),
                        if taken { "" } else { " and never took it on" }
                    ),
                ));
                continue;
            }
            let in_dead_letters = dead
                .iter()
                .any(|l| l.contains(aws_id.as_str()) && l.contains(device.as_str()));
            if !execution.timeline.iter().any(|s| s == status) && !in_dead_letters {
                found.push(violation(
                    "job-final",
                    format!(
                        "{what}: {status}, but its recorded timeline is {:?} and no dead letter has it",
                        execution.timeline
                    ),
                ));
            }
        }
    }
    found
}

/// Requests a device received more than once under the same id (MQTT's at-least-once).
pub fn redelivered(observed: &Observed) -> usize {
    let mut seen = BTreeSet::new();
    observed
        .got
        .iter()
        .filter(|g| !seen.insert((g.device.as_str(), g.id.as_str(), g.invoke)))
        .count()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::soak::observed::{Answered, Call, Got, JobExecution, JobRun, Read, Window};

    fn http(status: u16, started: f64) -> Http {
        Http {
            status,
            code: None,
            retry_after: status == 503,
            started,
            ended: started + 0.1,
        }
    }

    fn record(status: &str) -> Record {
        Record {
            status: 200,
            body: json!({ "status": status }),
        }
    }

    fn call(nonce: &str, id: &str, answered: &str, echoed: &str) -> Call {
        Call {
            device: "dev-1".into(),
            method: "ping".into(),
            nonce: nonce.into(),
            key: None,
            timeout_ms: 3000,
            http: http(200, 1.0),
            request_id: Some(id.into()),
            answered: Some(answered.into()),
            echoed: Some(echoed.into()),
        }
    }

    fn answered(id: &str, status: &str) -> Answered {
        Answered {
            device: "dev-1".into(),
            invoke: true,
            id: id.into(),
            status: status.into(),
            at: 1.5,
        }
    }

    fn got(id: &str, nonce: &str) -> Got {
        Got {
            device: "dev-1".into(),
            invoke: true,
            id: id.into(),
            nonce: Some(nonce.into()),
        }
    }

    /// One call answered and recorded as its device said: nothing to report.
    fn healthy() -> Observed {
        let mut observed = Observed::default();
        observed.calls.push(call("n1", "r1", "SUCCEEDED", "n1"));
        observed.got.push(got("r1", "n1"));
        observed.answered.push(answered("r1", "SUCCEEDED"));
        observed
            .invocations
            .insert("r1".into(), record("SUCCEEDED"));
        observed
    }

    fn names(violations: &[Violation]) -> Vec<&'static str> {
        violations.iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn a_healthy_run_breaks_nothing() {
        assert_eq!(check(&healthy()), vec![]);
    }

    #[test]
    fn a_reply_that_ingest_dropped_is_lost_unless_dead_lettered() {
        // The broken build: ingest acknowledges the reply and writes nothing.
        let mut observed = healthy();
        observed.calls[0].http = http(504, 1.0);
        observed.calls[0].answered = Some("TIMED_OUT".into());
        observed
            .invocations
            .insert("r1".into(), record("TIMED_OUT"));
        let found = check(&observed);
        assert_eq!(names(&found), vec!["nothing-lost"]);
        assert!(found[0].detail.contains("r1"), "{found:?}");

        observed
            .dead_letters
            .push(json!({"event": {"topic": "tether/replies/dev-1/r1"}}));
        assert_eq!(check(&observed), vec![]);
    }

    #[test]
    fn a_late_reply_may_replace_a_timeout_but_not_an_answer() {
        let mut observed = healthy();
        observed.calls[0].answered = Some("TIMED_OUT".into());
        assert_eq!(check(&observed), vec![], "late reply replaced the timeout");

        let mut observed = healthy();
        observed.invocations.insert("r1".into(), record("FAILED"));
        observed.answered[0].status = "FAILED".into();
        assert_eq!(names(&check(&observed)), vec!["answer-is-recorded"]);
    }

    #[test]
    fn server_errors_and_503s_outside_faults_are_violations() {
        let mut observed = healthy();
        let read = |status, at| Read {
            path: "/devices/dev-1".into(),
            http: http(status, at),
        };
        observed.reads.push(read(503, 10.0));
        observed.reads.push(read(503, 30.0));
        observed.reads.push(read(500, 10.0));
        observed.reads.push(read(0, 11.0));
        observed.windows.push(Window {
            kind: "dynamodb-unavailable",
            start: 9.0,
            end: 12.0,
            outage: true,
        });
        let found = check(&observed);
        assert_eq!(names(&found), vec!["no-server-error"; 3]);
        assert!(found[0].detail.contains("30.0s"), "{found:?}");
    }

    #[test]
    fn another_calls_answer_and_a_key_answered_twice_are_caught() {
        let mut observed = healthy();
        observed.calls[0].echoed = Some("n2".into());
        assert_eq!(names(&check(&observed)), vec!["own-answer"]);

        let mut observed = healthy();
        let mut again = call("n1", "r2", "SUCCEEDED", "n1");
        again.key = Some("k".into());
        observed.calls[0].key = Some("k".into());
        observed.calls.push(again);
        observed
            .invocations
            .insert("r2".into(), record("SUCCEEDED"));
        assert_eq!(names(&check(&observed)), vec!["own-answer"]);
    }

    #[test]
    fn one_key_reaching_a_device_twice_ran_twice_but_a_redelivery_did_not() {
        let mut observed = healthy();
        observed.got.push(got("r1", "n1"));
        assert_eq!(check(&observed), vec![]);
        assert_eq!(redelivered(&observed), 1);

        observed.got.push(got("r9", "n1"));
        observed
            .invocations
            .insert("r9".into(), record("TIMED_OUT"));
        assert_eq!(names(&check(&observed)), vec!["ran-once"]);
    }

    #[test]
    fn pending_records_and_requests_without_records_are_caught() {
        let mut observed = healthy();
        observed
            .executions
            .insert("e1".into(), record("IN_PROGRESS"));
        observed.invocations.insert(
            "r2".into(),
            Record {
                status: 404,
                body: json!({"code": "NOT_FOUND"}),
            },
        );
        assert_eq!(
            names(&check(&observed)),
            vec!["recorded-before-sent", "final-status"]
        );
    }

    /// A job on two devices: one finished and recorded as its device said.
    fn with_job(status: &str, timeline: &[&str]) -> Observed {
        let mut observed = healthy();
        observed.jobs.push(JobRun {
            job_id: Some("j1".into()),
            aws_job_id: Some("tether-j1".into()),
            operation: "ping".into(),
            expected: "SUCCEEDED".into(),
            targets: vec!["dev-1".into()],
            http: http(201, 2.0),
        });
        observed.job_updates.push(Answered {
            invoke: false,
            id: "tether-j1".into(),
            ..answered("tether-j1", "SUCCEEDED")
        });
        observed.job_executions.insert(
            "j1".into(),
            vec![JobExecution {
                job_id: "j1".into(),
                device: "dev-1".into(),
                status: status.into(),
                timeline: timeline.iter().map(|s| s.to_string()).collect(),
            }],
        );
        observed
    }

    #[test]
    fn a_job_execution_must_end_as_its_device_said_and_be_recorded() {
        assert_eq!(
            check(&with_job(
                "SUCCEEDED",
                &["QUEUED", "IN_PROGRESS", "SUCCEEDED"]
            )),
            vec![]
        );
        // Stuck, or another status than the device's.
        assert_eq!(
            names(&check(&with_job("QUEUED", &["QUEUED"]))),
            vec!["job-final"]
        );
        assert_eq!(
            names(&check(&with_job("FAILED", &["FAILED"]))),
            vec!["job-final"]
        );
        // The broken build: ingest dropped the job's final event.
        let lost = with_job("SUCCEEDED", &["QUEUED", "IN_PROGRESS"]);
        let found = check(&lost);
        assert_eq!(names(&found), vec!["job-final"]);
        assert!(found[0].detail.contains("timeline"), "{found:?}");
        let mut dead_lettered = lost;
        dead_lettered
            .dead_letters
            .push(json!({"event": {"topic": "$aws/events/jobExecution/tether-j1/succeeded", "thingArn": "thing/dev-1"}}));
        assert_eq!(check(&dead_lettered), vec![]);
        // An update applied but never acknowledged: the device took the job on, and its
        // behaviour says what it sent.
        let mut unacknowledged = with_job("SUCCEEDED", &["SUCCEEDED"]);
        unacknowledged.job_updates.clear();
        assert_eq!(names(&check(&unacknowledged)), vec!["job-final"]);
        unacknowledged
            .jobs_taken
            .push(("dev-1".into(), "tether-j1".into()));
        assert_eq!(check(&unacknowledged), vec![]);
        unacknowledged.job_executions.get_mut("j1").unwrap()[0].status = "FAILED".into();
        unacknowledged.job_executions.get_mut("j1").unwrap()[0].timeline = vec!["FAILED".into()];
        assert_eq!(names(&check(&unacknowledged)), vec!["job-final"]);
        // A target with no execution at all.
        let mut missing = with_job("SUCCEEDED", &["SUCCEEDED"]);
        missing.jobs[0].targets.push("dev-2".into());
        assert_eq!(names(&check(&missing)), vec!["job-final"]);
    }
}
