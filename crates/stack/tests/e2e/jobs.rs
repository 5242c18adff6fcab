//! AWS IoT Jobs end to end: the `jobs` function, local-iot's Jobs service, the simulated
//! devices running jobs over MQTT, and the job events through the rules into `ingest`. The
//! suite's stack has a Jobs minute of 3 s (see `common::start_stack`).
//!
//! The fleet's devices pick a behaviour by the document's `operation`, as they do by method
//! name: `upgrade` (any name) succeeds, `fail` fails, `reject` rejects, `silent` never finishes.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use tether_stack::Stack;

use crate::common::Api;

/// A job id unique to this run.
fn unique(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// Creates a job; returns its id.
async fn create(api: &Api, body: Value) -> anyhow::Result<String> {
    let answer = api.call("POST", "/jobs", Some(body.clone()), None).await?;
    ensure!(answer.status == 201, "POST /jobs {body}: {}", answer.body);
    let id = answer.body["jobId"].as_str().context("jobId")?.to_owned();
    let location = answer
        .headers
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default();
    ensure!(location == format!("/jobs/{id}"), "Location {location:?}");
    Ok(id)
}

/// Polls `path` until `done` holds (15 s at most).
async fn poll(api: &Api, path: &str, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = api.send("GET", path, None, None).await?;
        if status == 200 && done(&body) {
            return Ok(body);
        }
        ensure!(
            Instant::now() < deadline,
            "{path} stayed at {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn count(job: &Value, status: &str) -> u64 {
    job["counts"][status].as_u64().unwrap_or(0)
}

/// The executions of a job by device.
fn by_device<'a>(page: &'a Value, device: &str) -> Option<&'a Value> {
    page["items"]
        .as_array()?
        .iter()
        .find(|e| e["deviceId"] == device)
}

fn timeline_statuses(execution: &Value) -> Vec<String> {
    execution["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["status"].as_str().map(str::to_owned))
        .collect()
}

pub async fn a_job_runs_on_every_device_and_each_outcome_has_its_history(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let id = create(
        api,
        json!({"jobId": unique("fw"), "targets": ["dev-1", "dev-2", "dev-3"],
               "document": {"operation": "upgrade", "version": "1.2.0"}, "description": "firmware 1.2.0"}),
    )
    .await?;
    let job = poll(api, &format!("/jobs/{id}"), |j| j["status"] == "COMPLETED").await?;
    ensure!(count(&job, "SUCCEEDED") == 3, "three succeeded: {job}");
    ensure!(
        job["targets"] == json!(["dev-1", "dev-2", "dev-3"]),
        "{job}"
    );
    ensure!(job["completedAt"].is_string(), "{job}");
    // The history comes from the job-execution events through the rule and ingest.
    let page = poll(api, &format!("/jobs/{id}/executions"), |p| {
        ["dev-1", "dev-2", "dev-3"]
            .iter()
            .all(|d| by_device(p, d).is_some_and(|e| timeline_statuses(e) == ["SUCCEEDED"]))
    })
    .await?;
    let execution = by_device(&page, "dev-2").context("dev-2")?;
    ensure!(execution["status"] == "SUCCEEDED", "{execution}");
    ensure!(
        execution["startedAt"].is_string() && execution["completedAt"].is_string(),
        "{execution}"
    );
    ensure!(
        execution["statusDetails"].is_object(),
        "the device's details are kept: {execution}"
    );
    let (status, mine) = api.send("GET", "/devices/dev-2/jobs", None, None).await?;
    ensure!(
        status == 200
            && mine["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|e| e["jobId"] == id.as_str())),
        "the device lists the job: {mine}"
    );
    let (status, only_failed) = api
        .send(
            "GET",
            &format!("/jobs/{id}/executions?status=FAILED"),
            None,
            None,
        )
        .await?;
    ensure!(
        status == 200 && only_failed["items"] == json!([]),
        "{only_failed}"
    );
    let (status, listed) = api.send("GET", "/jobs?limit=100", None, None).await?;
    ensure!(
        status == 200 && listed.to_string().contains(&id),
        "{listed}"
    );
    Ok(())
}

pub async fn devices_that_fail_or_reject_a_job_say_so_and_the_abort_rule_stops_the_rest(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    // One execution every 3 s (a Jobs minute here): dev-1 and dev-2 fail before dev-3's turn,
    // and the abort rule (50 % of at least 2) cancels the job.
    let id = create(
        api,
        json!({"jobId": unique("risky"), "targets": ["dev-1", "dev-2", "dev-3"],
               "document": {"operation": "fail"}, "rollout": {"maximumPerMinute": 1},
               "abort": [{"failureType": "FAILED", "thresholdPercentage": 50, "minExecuted": 2}]}),
    )
    .await?;
    let first = poll(api, &format!("/jobs/{id}"), |j| count(j, "FAILED") == 1).await?;
    ensure!(
        count(&first, "PENDING_ROLLOUT") >= 1,
        "the rollout holds the rest back: {first}"
    );
    let job = poll(api, &format!("/jobs/{id}"), |j| j["status"] == "CANCELED").await?;
    ensure!(job["reasonCode"] == "$ABORTED", "{job}");
    ensure!(
        count(&job, "FAILED") == 2 && count(&job, "SUCCEEDED") == 0,
        "{job}"
    );
    let page = poll(api, &format!("/jobs/{id}/executions"), |p| {
        by_device(p, "dev-1").is_some_and(|e| timeline_statuses(e) == ["FAILED"])
    })
    .await?;
    ensure!(
        by_device(&page, "dev-3").is_none(),
        "dev-3 never got it: {page}"
    );
    let failed = by_device(&page, "dev-1").context("dev-1")?;
    ensure!(
        failed["statusDetails"].is_object(),
        "the failure says why: {failed}"
    );

    let rejected = create(
        api,
        json!({"jobId": unique("nope"), "targets": ["dev-3"], "document": {"operation": "reject"}}),
    )
    .await?;
    let job = poll(api, &format!("/jobs/{rejected}"), |j| {
        j["status"] == "COMPLETED"
    })
    .await?;
    ensure!(count(&job, "REJECTED") == 1, "{job}");
    Ok(())
}

pub async fn a_job_times_out_in_progress_and_force_cancels_a_running_one(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    // timeoutMinutes 1 is 3 s here.
    let timed = create(
        api,
        json!({"jobId": unique("slow"), "targets": ["dev-1"], "document": {"operation": "silent"},
               "timeoutMinutes": 1}),
    )
    .await?;
    let job = poll(api, &format!("/jobs/{timed}"), |j| {
        j["status"] == "COMPLETED"
    })
    .await?;
    ensure!(count(&job, "TIMED_OUT") == 1, "{job}");
    poll(api, &format!("/jobs/{timed}/executions"), |p| {
        by_device(p, "dev-1").is_some_and(|e| timeline_statuses(e) == ["TIMED_OUT"])
    })
    .await?;

    let running = create(
        api,
        json!({"jobId": unique("stuck"), "targets": ["dev-2"], "document": {"operation": "silent"}}),
    )
    .await?;
    poll(api, &format!("/jobs/{running}"), |j| {
        count(j, "IN_PROGRESS") == 1
    })
    .await?;
    let (status, cancelled) = api
        .send(
            "POST",
            &format!("/jobs/{running}/cancel"),
            Some(json!({"comment": "wrong image"})),
            None,
        )
        .await?;
    ensure!(
        status == 202 && cancelled["status"] == "CANCELED",
        "{cancelled}"
    );
    ensure!(
        count(&cancelled, "IN_PROGRESS") == 1,
        "without force the running execution goes on: {cancelled}"
    );
    let (status, forced) = api
        .send(
            "POST",
            &format!("/jobs/{running}/cancel"),
            Some(json!({"force": true})),
            None,
        )
        .await?;
    ensure!(status == 202 && forced["forceCanceled"] == true, "{forced}");
    ensure!(count(&forced, "CANCELED") == 1, "{forced}");
    ensure!(forced["comment"] == "wrong image", "{forced}");
    // dev-2 is free for the next job.
    let next = create(
        api,
        json!({"jobId": unique("after"), "targets": ["dev-2"], "document": {"operation": "upgrade"}}),
    )
    .await?;
    poll(api, &format!("/jobs/{next}"), |j| {
        j["status"] == "COMPLETED"
    })
    .await?;

    let (status, _) = api
        .send("DELETE", &format!("/jobs/{next}"), None, None)
        .await?;
    ensure!(status == 202, "a finished job is deleted");
    let (status, gone) = api
        .send("GET", &format!("/jobs/{next}"), None, None)
        .await?;
    ensure!(status == 404 && gone["code"] == "JOB_NOT_FOUND", "{gone}");
    Ok(())
}

pub async fn creating_a_job_again_is_safe_and_bad_job_requests_create_nothing(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let body = json!({"targets": ["dev-3"], "document": {"operation": "upgrade"}});
    let key = unique("key");
    let first = api
        .call("POST", "/jobs", Some(body.clone()), Some(&key))
        .await?;
    let again = api.call("POST", "/jobs", Some(body), Some(&key)).await?;
    ensure!(
        first.status == 201 && again.status == 201 && first.body == again.body,
        "{} {}",
        first.body,
        again.body
    );
    let id = first.body["jobId"].as_str().context("jobId")?;
    let other = api
        .call(
            "POST",
            "/jobs",
            Some(json!({"jobId": id, "targets": ["dev-3"], "document": {"operation": "other"}})),
            None,
        )
        .await?;
    ensure!(
        other.status == 409 && other.body["code"] == "CONFLICT",
        "{}",
        other.body
    );

    let big = "x".repeat(33 * 1024);
    let bad = [
        json!({"targets": [], "document": {}}),
        json!({"targets": ["dev-1", "dev-1"], "document": {}}),
        json!({"targets": ["dev/1"], "document": {}}),
        json!({"targets": ["dev-1"], "document": [1, 2]}),
        json!({"targets": ["dev-1"], "document": "text"}),
        json!({"targets": ["dev-1"], "document": {"blob": big}}),
        json!({"jobId": "a b", "targets": ["dev-1"], "document": {}}),
        json!({"targets": ["dev-1"], "document": {}, "rollout": {"maximumPerMinute": 0}}),
        json!({"targets": ["dev-1"], "document": {}, "timeoutMinutes": 20000}),
        json!({"targets": ["dev-1"], "document": {}, "abort": [{"failureType": "SOMETIMES", "thresholdPercentage": 5, "minExecuted": 1}]}),
        json!({"targets": ["dev-1"], "document": {}, "unknown": true}),
    ];
    let (_, before) = api.send("GET", "/jobs?limit=100", None, None).await?;
    for body in bad {
        let (status, problem) = api.send("POST", "/jobs", Some(body.clone()), None).await?;
        ensure!(
            status == 400 && problem["code"] == "VALIDATION_ERROR",
            "{body}: {status} {problem}"
        );
    }
    let (_, after) = api.send("GET", "/jobs?limit=100", None, None).await?;
    ensure!(
        before["items"].as_array().map(Vec::len) == after["items"].as_array().map(Vec::len),
        "nothing was created"
    );
    for (method, path, body) in [
        ("GET", "/jobs/no-such-job", None),
        ("GET", "/jobs/no-such-job/executions", None),
        ("POST", "/jobs/no-such-job/cancel", Some(json!({}))),
        ("DELETE", "/jobs/no-such-job", None),
    ] {
        let (status, problem) = api.send(method, path, body, None).await?;
        ensure!(
            status == 404 && problem["code"] == "JOB_NOT_FOUND",
            "{method} {path}: {status} {problem}"
        );
    }
    for (method, path) in [
        ("GET", "/jobs/bad%20id"),
        ("GET", "/jobs?status=QUEUED"),
        ("GET", "/devices/dev-1/jobs?status=DONE"),
        ("DELETE", "/jobs/x?force=maybe"),
    ] {
        let (status, problem) = api.send(method, path, None, None).await?;
        ensure!(
            status == 400 && problem["code"] == "VALIDATION_ERROR",
            "{method} {path}: {status} {problem}"
        );
    }
    Ok(())
}
