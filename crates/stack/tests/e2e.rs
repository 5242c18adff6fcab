//! End to end on the local stack: the local DynamoDB endpoint, local-iot, the real function
//! binaries under `cargo lambda watch`, and simulated devices; driven through HTTP as a user
//! would. The stack starts once; the scenarios run in turn and every failure is reported.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::{json, Value};
use tether_stack::demo::Demo;
use tether_stack::Stack;

mod common;
use common::Api;

#[path = "e2e/delivery.rs"]
mod delivery;
use delivery::{
    connect_timeout_waits_for_a_device_to_connect,
    each_answer_says_whether_the_device_got_the_request,
};
#[path = "e2e/inbox.rs"]
mod inbox;
use inbox::{
    a_device_says_it_is_working_then_answers, an_mqtt_3_device_answers_through_the_rule_path,
    replies_reach_the_waiting_instance_and_are_recorded_once,
};

#[path = "e2e/jobs.rs"]
mod jobs;
use jobs::{
    a_job_runs_on_every_device_and_each_outcome_has_its_history,
    a_job_times_out_in_progress_and_force_cancels_a_running_one,
    creating_a_job_again_is_safe_and_bad_job_requests_create_nothing,
    devices_that_fail_or_reject_a_job_say_so_and_the_abort_rule_stops_the_rest,
};

fn received_by(stack: &Stack, method: &str) -> usize {
    stack
        .fleet()
        .unwrap()
        .received()
        .iter()
        .filter(|r| r.method.as_deref() == Some(method))
        .count()
}

async fn concurrent_calls_to_one_device_each_get_their_own_answer(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let call = |n: u32| {
        api.send(
            "POST",
            "/devices/dev-1/invoke",
            Some(json!({"method": "slow", "payload": {"n": n}, "timeoutMs": 10000})),
            None,
        )
    };
    let (a, b) = tokio::join!(call(1), call(2));
    let ((sa, a), (sb, b)) = (a?, b?);
    ensure!(sa == 200 && sb == 200, "both answered: {a} {b}");
    ensure!(
        a["result"] == json!({"n": 1}) && b["result"] == json!({"n": 2}),
        "no cross-talk: {a} {b}"
    );
    ensure!(a["requestId"] != b["requestId"], "two invocations");
    Ok(())
}

/// More calls at once than `cargo lambda watch` can queue for one function (it deadlocks past
/// 100 waiting): the stack's gateway keeps the excess, every caller gets its own answer, and
/// the API still answers afterwards.
async fn a_burst_of_200_calls_each_get_their_own_answer(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let calls = (0..200).map(|i| async move {
        let device = format!("dev-{}", i % 3 + 1);
        let (status, body) = api
            .send(
                "POST",
                &format!("/devices/{device}/invoke"),
                Some(json!({"method": "burst", "payload": {"call": i}, "timeoutMs": 20000})),
                None,
            )
            .await?;
        anyhow::Ok(
            status == 200 && body["result"] == json!({"call": i}) && body["deviceId"] == device,
        )
    });
    let answers = futures::future::join_all(calls).await;
    let wrong = answers.iter().filter(|a| !matches!(a, Ok(true))).count();
    ensure!(
        wrong == 0,
        "{wrong} of 200 calls failed or got another call's answer"
    );
    let (status, _) = api.send("GET", "/devices/dev-1", None, None).await?;
    ensure!(status == 200, "the API answers after the burst");
    Ok(())
}

async fn an_idempotent_retry_publishes_once_and_returns_the_same_invocation(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    let body = json!({"method": "reboot", "payload": {"force": true}, "timeoutMs": 5000});
    let (first_status, first) = api
        .send(
            "POST",
            "/devices/dev-2/invoke",
            Some(body.clone()),
            Some("e2e-reboot-1"),
        )
        .await?;
    let (retry_status, retry) = api
        .send(
            "POST",
            "/devices/dev-2/invoke",
            Some(body),
            Some("e2e-reboot-1"),
        )
        .await?;
    let (conflict_status, conflict) = api
        .send(
            "POST",
            "/devices/dev-2/invoke",
            Some(json!({"method": "reboot", "timeoutMs": 5000})),
            Some("e2e-reboot-1"),
        )
        .await?;
    ensure!(
        first_status == 200 && retry_status == 200,
        "{first} {retry}"
    );
    ensure!(
        first["requestId"] == retry["requestId"],
        "same invocation: {first} {retry}"
    );
    ensure!(
        received_by(stack, "reboot") == 1,
        "the device got the request once, got {}",
        received_by(stack, "reboot")
    );
    ensure!(
        conflict_status == 409 && conflict["code"] == "CONFLICT",
        "{conflict}"
    );
    Ok(())
}

async fn hostile_names_are_refused_before_any_publish(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    let before = stack.fleet().unwrap().received().len();
    for (path, body) in [
        ("/devices/dev-1/invoke", json!({"method": "x/+/#"})),
        ("/devices/dev-1/invoke", json!({"method": "$aws"})),
        ("/devices/dev%2F1/invoke", json!({"method": "ok"})),
        ("/devices/dev+1/invoke", json!({"method": "ok"})),
        (
            "/devices/dev-1/invoke",
            json!({"method": "ok", "timeoutMs": 50}),
        ),
        (
            "/devices/dev-1/invoke",
            json!({"method": "ok", "payload": "x".repeat(140_000)}),
        ),
    ] {
        let (status, problem) = api.send("POST", path, Some(body), None).await?;
        ensure!((400..500).contains(&status), "{path}: {status} {problem}");
        ensure!(
            problem["code"].is_string() && problem["type"].is_string(),
            "problem+json: {problem}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        stack.fleet().unwrap().received().len() == before,
        "nothing was published"
    );
    Ok(())
}

async fn the_read_routes_answer_on_the_deployed_paths(api: &Api, _: &Stack) -> anyhow::Result<()> {
    let (status, missing) = api.send("GET", "/invocations/0000", None, None).await?;
    ensure!(
        status == 404 && missing["code"] == "INVOCATION_NOT_FOUND",
        "{missing}"
    );
    let (status, list) = api
        .send("GET", "/devices/dev-1/executions?limit=5", None, None)
        .await?;
    ensure!(status == 200 && list["items"].is_array(), "{list}");
    let (status, bad) = api
        .send(
            "GET",
            "/commands/c-1/executions?nextToken=forged",
            None,
            None,
        )
        .await?;
    ensure!(
        status == 400 && bad["code"] == "INVALID_NEXT_TOKEN",
        "{bad}"
    );
    Ok(())
}

async fn an_offline_device_is_refused_fast(api: &Api, _: &Stack) -> anyhow::Result<()> {
    let started = Instant::now();
    let (status, problem) = api.invoke("never-seen", "ping", 20000).await?;
    ensure!(
        status == 404 && problem["code"] == "DEVICE_NOT_CONNECTED",
        "{problem}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "refused without waiting for the timeout"
    );
    Ok(())
}

/// Creates a command whose payload names the simulated devices' behaviour (`{"method": ...}`).
async fn command_for(api: &Api, behaviour: &str) -> anyhow::Result<String> {
    let id = format!("e2e-{behaviour}-{}", std::process::id());
    let (status, created) = api
        .send(
            "POST",
            "/commands",
            Some(json!({"commandId": id, "payload": {"content": {"method": behaviour}}})),
            None,
        )
        .await?;
    ensure!(status == 201, "create {id}: {created}");
    Ok(id)
}

/// Polls `GET /executions/{id}` until `done` holds for the record.
async fn poll_execution(
    api: &Api,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, record) = api
            .send("GET", &format!("/executions/{id}"), None, None)
            .await?;
        if status == 200 && done(&record) {
            return Ok(record);
        }
        ensure!(
            Instant::now() < deadline,
            "execution {id} stayed at {record}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn timeline(record: &Value) -> Vec<String> {
    record["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["status"].as_str().map(str::to_owned))
        .collect()
}

async fn devices_that_fail_or_reject_a_command_say_why(api: &Api, _: &Stack) -> anyhow::Result<()> {
    for (behaviour, status, code) in [
        ("fail", "FAILED", "BULB_BROKEN"),
        ("reject", "REJECTED", "BUSY"),
    ] {
        let command = command_for(api, behaviour).await?;
        let (http, answer) = api
            .send(
                "POST",
                &format!("/commands/{command}/executions"),
                Some(json!({"targets": ["dev-1", "dev-2"], "timeoutSeconds": 10, "waitMs": 8000})),
                None,
            )
            .await?;
        ensure!(http == 200, "{behaviour}: {answer}");
        for execution in answer["executions"].as_array().context("executions")? {
            ensure!(
                execution["status"] == status && execution["statusReason"]["reasonCode"] == code,
                "{behaviour}: {execution}"
            );
            let id = execution["executionId"].as_str().context("executionId")?;
            let record = poll_execution(api, id, |r| r["status"] == status).await?;
            ensure!(
                record["statusReason"]["reasonCode"] == code && record["completedAt"].is_string(),
                "{record}"
            );
        }
    }
    Ok(())
}

async fn a_cloud_timeout_is_replaced_by_the_devices_late_report(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let command = command_for(api, "late").await?;
    let (http, answer) = api
        .send(
            "POST",
            &format!("/commands/{command}/executions"),
            Some(json!({"targets": ["dev-3"], "timeoutSeconds": 1, "waitMs": 6000})),
            None,
        )
        .await?;
    ensure!(http == 200, "the cloud timeout is a final answer: {answer}");
    let first = &answer["executions"][0];
    ensure!(
        first["status"] == "TIMED_OUT"
            && first["statusReason"]["reasonCode"] == "$NO_RESPONSE_FROM_DEVICE",
        "{first}"
    );
    let id = first["executionId"].as_str().context("executionId")?;
    let record = poll_execution(api, id, |r| r["status"] == "SUCCEEDED").await?;
    let history = timeline(&record);
    ensure!(
        history.first().map(String::as_str) == Some("CREATED")
            && history.contains(&"TIMED_OUT".to_owned())
            && history.last().map(String::as_str) == Some("SUCCEEDED"),
        "CREATED .. TIMED_OUT .. SUCCEEDED: {history:?}"
    );
    Ok(())
}

async fn a_retried_start_with_the_same_key_starts_nothing_new(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    let command = command_for(api, "retried").await?;
    let path = format!("/commands/{command}/executions");
    let body = json!({"targets": ["dev-1", "dev-2"], "timeoutSeconds": 10});
    let key = format!("e2e-start-{}", std::process::id());
    let (first_status, first) = api
        .send("POST", &path, Some(body.clone()), Some(&key))
        .await?;
    let (retry_status, retry) = api.send("POST", &path, Some(body), Some(&key)).await?;
    ensure!(
        first_status == 202 && retry_status == 202,
        "{first} {retry}"
    );
    let ids = |answer: &Value| -> Vec<String> {
        answer["executions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["executionId"].as_str().map(str::to_owned))
            .collect()
    };
    ensure!(
        ids(&first).len() == 2 && ids(&first) == ids(&retry),
        "same executions: {first} {retry}"
    );
    for id in ids(&first) {
        poll_execution(api, &id, |r| r["status"] == "SUCCEEDED").await?;
    }
    ensure!(
        received_by(stack, "retried") == 2,
        "each device got the command once, got {}",
        received_by(stack, "retried")
    );
    let (status, listed) = api
        .send(
            "GET",
            &format!("/commands/{command}/executions"),
            None,
            None,
        )
        .await?;
    ensure!(
        status == 200 && listed["items"].as_array().map(Vec::len) == Some(2),
        "two executions recorded, not four: {listed}"
    );
    Ok(())
}

async fn a_devices_executions_list_newest_first_with_a_status_filter(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let command = command_for(api, "listing").await?;
    let mut started = Vec::new();
    for _ in 0..3 {
        let (status, answer) = api
            .send(
                "POST",
                &format!("/commands/{command}/executions"),
                Some(json!({"targets": ["dev-2"], "waitMs": 8000})),
                None,
            )
            .await?;
        ensure!(status == 200, "{answer}");
        started.push(
            answer["executions"][0]["executionId"]
                .as_str()
                .context("id")?
                .to_owned(),
        );
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = "/devices/dev-2/executions?status=SUCCEEDED&limit=2".to_owned();
        if let Some(token) = &token {
            path.push_str(&format!("&nextToken={}", urlencode(token)));
        }
        let (status, page) = api.send("GET", &path, None, None).await?;
        ensure!(status == 200, "{page}");
        for item in page["items"].as_array().context("items")? {
            ensure!(
                item["status"] == "SUCCEEDED" && item["target"] == "dev-2",
                "{item}"
            );
            let created = item["createdAt"].as_str().context("createdAt")?.to_owned();
            seen.push((
                created,
                item["executionId"].as_str().context("id")?.to_owned(),
            ));
        }
        match page["nextToken"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    let mut newest_first = seen.clone();
    newest_first.sort_by(|a, b| b.0.cmp(&a.0));
    ensure!(seen == newest_first, "newest first: {seen:?}");
    let ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
    for id in &started {
        ensure!(ids.contains(&id), "{id} is listed");
    }
    let first_three: Vec<&String> = ids.iter().take(3).copied().collect();
    let expected: Vec<&String> = started.iter().rev().collect();
    ensure!(
        first_three == expected,
        "the last started come first: {first_three:?} {expected:?}"
    );
    Ok(())
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One hostile request: method, path, content type (None: none sent), body, the status and
/// code it must get.
type Hostile = (
    &'static str,
    String,
    Option<&'static str>,
    String,
    u16,
    &'static str,
);

fn hostile_corpus() -> Vec<Hostile> {
    const J: Option<&str> = Some("application/json");
    let invoke = "/devices/dev-1/invoke".to_owned();
    let start = "/commands/hostile-target/executions".to_owned();
    let v = |method, path: &str, body: &str| -> Hostile {
        (
            method,
            path.to_owned(),
            J,
            body.to_owned(),
            400,
            "VALIDATION_ERROR",
        )
    };
    let long = |n: usize| "a".repeat(n);
    vec![
        // Malformed JSON and wrong shapes.
        v("POST", &invoke, "{"),
        v("POST", &invoke, "[]"),
        v("POST", &invoke, "\"text\""),
        v("POST", &invoke, "null"),
        v("POST", &invoke, "   "),
        v("POST", &invoke, "{}"),
        v("POST", &invoke, r#"{"method": 5}"#),
        v("POST", &invoke, r#"{"method": null}"#),
        v("POST", &invoke, r#"{"method": ["a"]}"#),
        v("POST", &invoke, r#"{"method": "a", "timeoutMs": "100"}"#),
        v("POST", &invoke, r#"{"method": "a", "timeoutMs": -1}"#),
        v("POST", &invoke, r#"{"method": "a", "timeoutMs": 99}"#),
        v("POST", &invoke, r#"{"method": "a", "timeoutMs": 25001}"#),
        v("POST", &invoke, r#"{"method": "a", "timeoutMs": 1e20}"#),
        v("POST", &invoke, r#"{"method": "a", "timeoutMs": 100.5}"#),
        v("POST", &invoke, r#"{"method": "a", "timeoutMs": null}"#),
        v("POST", &invoke, r#"{"method": "a", "extra": 1}"#),
        v("POST", &invoke, r#"{"method": "a", "payload": {"x": 1}"#),
        // Method names that could change a topic, or are not names at all.
        v("POST", &invoke, r#"{"method": "a/b"}"#),
        v("POST", &invoke, r#"{"method": "a+b"}"#),
        v("POST", &invoke, r##"{"method": "a#b"}"##),
        v("POST", &invoke, r#"{"method": "$aws"}"#),
        v("POST", &invoke, r#"{"method": "a\u0000b"}"#),
        v("POST", &invoke, r#"{"method": "a b"}"#),
        v("POST", &invoke, r#"{"method": "a\nb"}"#),
        v("POST", &invoke, r#"{"method": ""}"#),
        v("POST", &invoke, &format!(r#"{{"method": "{}"}}"#, long(65))),
        v("POST", &invoke, r#"{"method": "é"}"#),
        v("POST", &invoke, r#"{"method": "ma:thod"}"#),
        // Device ids that could change a topic.
        v("POST", "/devices/dev+1/invoke", r#"{"method": "a"}"#),
        v("POST", "/devices/dev%2F1/invoke", r#"{"method": "a"}"#),
        v("POST", "/devices/dev%231/invoke", r#"{"method": "a"}"#),
        v("POST", "/devices/%24aws/invoke", r#"{"method": "a"}"#),
        v("POST", "/devices/dev%001/invoke", r#"{"method": "a"}"#),
        v("POST", "/devices/dev%201/invoke", r#"{"method": "a"}"#),
        v("POST", "/devices/d%C3%A9v/invoke", r#"{"method": "a"}"#),
        v(
            "POST",
            &format!("/devices/{}/invoke", long(129)),
            r#"{"method": "a"}"#,
        ),
        v("GET", "/devices/dev%2B1", ""),
        v("GET", "/devices/%2B/executions", ""),
        v("GET", "/invocations/req%2F1", ""),
        v("GET", &format!("/invocations/{}", long(65)), ""),
        v("GET", "/executions/ex%23", ""),
        v("GET", "/commands/c%2F1", ""),
        v("GET", "/commands/c%24/executions", ""),
        // Sizes and content types.
        (
            "POST",
            invoke.clone(),
            J,
            format!(r#"{{"method": "a", "payload": "{}"}}"#, long(140_000)),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "POST",
            invoke.clone(),
            Some("text/plain"),
            r#"{"method": "a"}"#.into(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "POST",
            invoke.clone(),
            Some("application/xml"),
            "<method>a</method>".into(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "POST",
            invoke.clone(),
            Some("application/x-www-form-urlencoded"),
            "method=a".into(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "POST",
            "/commands".into(),
            Some("multipart/form-data"),
            "x".into(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        // Commands: bodies, targets, ids.
        v("POST", "/commands", "{}"),
        v(
            "POST",
            "/commands",
            r#"{"commandId": "a/b", "payload": {"content": {}}}"#,
        ),
        v(
            "POST",
            "/commands",
            r#"{"commandId": null, "payload": {"content": {}}}"#,
        ),
        v(
            "POST",
            "/commands",
            r#"{"payload": {"content": {}}, "unknown": true}"#,
        ),
        v(
            "POST",
            "/commands",
            &format!(
                r#"{{"displayName": "{}", "payload": {{"content": {{}}}}}}"#,
                long(65)
            ),
        ),
        v("PATCH", "/commands/hostile-target", "{}"),
        v(
            "PATCH",
            "/commands/hostile-target",
            r#"{"deprecated": "yes"}"#,
        ),
        v("POST", &start, r#"{"targets": []}"#),
        v(
            "POST",
            &start,
            &format!(r#"{{"targets": [{}]}}"#, vec!["\"d\""; 101].join(",")),
        ),
        v("POST", &start, r#"{"targets": ["dev/1"]}"#),
        v(
            "POST",
            &start,
            r#"{"targets": ["dev-1"], "targetType": "robot"}"#,
        ),
        v("POST", &start, r#"{"targets": ["dev-1"], "waitMs": -5}"#),
        v("POST", &start, r#"{"targets": "dev-1"}"#),
        // Listings and tokens.
        (
            "GET",
            "/devices/dev-1/executions?nextToken=forged".into(),
            None,
            String::new(),
            400,
            "INVALID_NEXT_TOKEN",
        ),
        (
            "GET",
            "/commands/c-1/executions?nextToken=%00%FF".into(),
            None,
            String::new(),
            400,
            "INVALID_NEXT_TOKEN",
        ),
        v("GET", "/devices/dev-1/executions?limit=0", ""),
        v("GET", "/devices/dev-1/executions?limit=101", ""),
        v("GET", "/devices/dev-1/executions?limit=ten", ""),
        v("GET", "/devices/dev-1/executions?status=DONE", ""),
        v("GET", "/devices/dev-1/executions?sort=asc", ""),
        v("GET", "/commands?limit=1000", ""),
        // Paths the API does not have, and methods a path does not take (the default route).
        (
            "GET",
            "/nowhere".into(),
            None,
            String::new(),
            404,
            "ROUTE_NOT_FOUND",
        ),
        (
            "POST",
            "/devices/dev-1/invoke/again".into(),
            J,
            "{}".into(),
            404,
            "ROUTE_NOT_FOUND",
        ),
        (
            "GET",
            "/".into(),
            None,
            String::new(),
            404,
            "ROUTE_NOT_FOUND",
        ),
        (
            "DELETE",
            invoke.clone(),
            None,
            String::new(),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            "GET",
            invoke.clone(),
            None,
            String::new(),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            "PUT",
            "/commands/hostile-target".into(),
            J,
            "{}".into(),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            "POST",
            "/invocations/0123456789abcdef0123456789abcdef".into(),
            J,
            "{}".into(),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            "DELETE",
            "/commands".into(),
            None,
            String::new(),
            405,
            "METHOD_NOT_ALLOWED",
        ),
    ]
}

/// A table of hostile requests: each gets the 4xx problem+json it should, none a 5xx, and no
/// device receives anything meanwhile.
async fn hostile_requests_get_a_stable_4xx_and_nothing_is_sent(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    // A command to aim the execution cases at (valid, so only the body is wrong).
    let (status, created) = api
        .send(
            "POST",
            "/commands",
            Some(
                json!({"commandId": "hostile-target", "payload": {"content": {"method": "echo"}}}),
            ),
            None,
        )
        .await?;
    ensure!(status == 201 || status == 409, "{created}");
    let before = stack.fleet().unwrap().received().len();
    let corpus = hostile_corpus();
    ensure!(
        corpus.len() >= 60,
        "the corpus has {} requests",
        corpus.len()
    );
    let mut wrong = Vec::new();
    for (method, path, content_type, body, status, code) in corpus {
        let mut request = api.http.request(
            reqwest::Method::from_bytes(method.as_bytes())?,
            format!("{}{path}", api.base),
        );
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if !body.is_empty() {
            request = request.body(body.clone());
        }
        let response = request.send().await?;
        let got = response.status().as_u16();
        let media = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        if got != status || problem["code"] != code || media != "application/problem+json" {
            let shown: String = body.chars().take(60).collect();
            wrong.push(format!(
                "{method} {} {shown:?}: wanted {status} {code}, got {got} {media} {problem}",
                path.chars().take(80).collect::<String>()
            ));
        }
    }
    // A valid body with an Idempotency-Key over the 128 characters allowed.
    let (status, problem) = api
        .send(
            "POST",
            "/devices/dev-1/invoke",
            Some(json!({"method": "a"})),
            Some(&"k".repeat(300)),
        )
        .await?;
    if status != 400 || problem["code"] != "VALIDATION_ERROR" {
        wrong.push(format!(
            "a 300-character Idempotency-Key: got {status} {problem}"
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = stack.fleet().unwrap().received().len();
    ensure!(
        after == before,
        "{} messages reached devices",
        after - before
    );
    ensure!(
        wrong.is_empty(),
        "{} wrong answers:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    Ok(())
}

/// Payloads, results and reply bodies never reach the functions' logs at `info` (the stack runs
/// them with `RUST_LOG=info`), while the ids that tie a log line to a record do.
async fn payloads_and_results_stay_out_of_the_info_logs(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let canary = format!("canary-{}-do-not-log", std::process::id());
    let (status, invoked) = api
        .send(
            "POST",
            "/devices/dev-3/invoke",
            Some(json!({"method": "setSecret", "payload": {"secret": canary}, "timeoutMs": 5000})),
            None,
        )
        .await?;
    ensure!(
        status == 200 && invoked["result"]["secret"] == canary.as_str(),
        "{invoked}"
    );
    let command = format!("e2e-canary-{}", std::process::id());
    let (status, created) = api
        .send(
            "POST",
            "/commands",
            Some(json!({"commandId": command, "payload": {"content": {"method": "echo", "secret": canary}}})),
            None,
        )
        .await?;
    ensure!(status == 201, "{created}");
    let (status, started) = api
        .send(
            "POST",
            &format!("/commands/{command}/executions"),
            Some(json!({"targets": ["dev-3"], "waitMs": 8000})),
            None,
        )
        .await?;
    ensure!(status == 200, "{started}");
    let execution = started["executions"][0]["executionId"]
        .as_str()
        .context("executionId")?
        .to_owned();
    let record = poll_execution(api, &execution, |r| r["result"].is_object()).await?;
    ensure!(
        record.to_string().contains(&canary),
        "the result is kept: {record}"
    );

    let log = std::fs::read_to_string(common::log_dir("e2e").join("functions.log"))?;
    let request_id = invoked["requestId"].as_str().context("requestId")?;
    ensure!(
        log.contains(request_id) && log.contains(&execution),
        "the ids are logged (else this check proves nothing)"
    );
    ensure!(
        !log.contains(&canary),
        "a payload or result reached the info log: {}",
        log.lines()
            .find(|l| l.contains(&canary))
            .unwrap_or_default()
    );
    Ok(())
}

/// schemathesis (from the venv) drives every operation of `openapi.yaml` against the running
/// API with examples, boundary values and generated valid and invalid inputs: no 5xx, and
/// every status code, content type and body is one the contract declares.
async fn the_running_api_keeps_the_openapi_contract_under_generated_input(
    api: &Api,
    _: &Stack,
) -> anyhow::Result<()> {
    let root = common::root();
    let reports = common::log_dir("e2e").join("schemathesis");
    let mut command = std::process::Command::new(root.join(".venv/bin/schemathesis"));
    command
        .current_dir(&root)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        // Drops only the bare 500s of `cargo lambda watch` itself (see the file).
        .env("PYTHONPATH", root.join("tests"))
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .args(["run", "openapi.yaml", "--url", &api.base])
        // Locally there is no IAM: the signature header is there but not checked.
        .args(["--header", "Authorization: local-stack"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,negative_data_rejection",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        // One worker: schemathesis 4.32's coverage phase fails internally with two.
        .args([
            "--max-examples",
            "30",
            "--seed",
            "20261124",
            "--workers",
            "1",
        ])
        .args(["--request-timeout", "40", "--suppress-health-check", "all"])
        .args([
            "--generation-database",
            "none",
            "--no-color",
            "--report",
            "junit",
        ])
        .arg("--report-dir")
        .arg(&reports);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .context("running .venv/bin/schemathesis (make venv installs it)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "schemathesis found contract violations (junit report in {}):\n{}\n{}",
        reports.display(),
        text,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The demo scenario `make demo` runs, as a test.
async fn the_demo_runs_every_step(api: &Api, stack: &Stack) -> anyhow::Result<()> {
    let mut demo = Demo::new(&api.base);
    demo.verbose = false;
    demo.mqtt = Some(stack.endpoints.mqtt.clone());
    demo.run().await
}

fn main() -> ExitCode {
    common::run_scenarios(
        "e2e",
        vec![
            scenario!(the_demo_runs_every_step),
            scenario!(concurrent_calls_to_one_device_each_get_their_own_answer),
            scenario!(a_burst_of_200_calls_each_get_their_own_answer),
            scenario!(an_idempotent_retry_publishes_once_and_returns_the_same_invocation),
            scenario!(hostile_names_are_refused_before_any_publish),
            scenario!(the_read_routes_answer_on_the_deployed_paths),
            scenario!(an_offline_device_is_refused_fast),
            scenario!(each_answer_says_whether_the_device_got_the_request),
            scenario!(connect_timeout_waits_for_a_device_to_connect),
            scenario!(replies_reach_the_waiting_instance_and_are_recorded_once),
            scenario!(an_mqtt_3_device_answers_through_the_rule_path),
            scenario!(a_device_says_it_is_working_then_answers),
            scenario!(devices_that_fail_or_reject_a_command_say_why),
            scenario!(a_cloud_timeout_is_replaced_by_the_devices_late_report),
            scenario!(a_retried_start_with_the_same_key_starts_nothing_new),
            scenario!(a_devices_executions_list_newest_first_with_a_status_filter),
            scenario!(hostile_requests_get_a_stable_4xx_and_nothing_is_sent),
            scenario!(payloads_and_results_stay_out_of_the_info_logs),
            scenario!(a_job_runs_on_every_device_and_each_outcome_has_its_history),
            scenario!(creating_a_job_again_is_safe_and_bad_job_requests_create_nothing),
            scenario!(devices_that_fail_or_reject_a_job_say_so_and_the_abort_rule_stops_the_rest),
            scenario!(a_job_times_out_in_progress_and_force_cancels_a_running_one),
            scenario!(the_running_api_keeps_the_openapi_contract_under_generated_input),
        ],
        None,
    )
}
