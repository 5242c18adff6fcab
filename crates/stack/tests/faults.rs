//! Faults on the local stack: DynamoDB answering errors, a device-gateway outage with calls in
//! flight (ended in 504s, and answers held through it reaching their calls once), devices that
//! answer twice, late, for another device's request or with garbage.
//! Each scenario injects its fault, checks what callers and records show, and restores the
//! stack for the next one; every failure is reported.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use tether_local_iot::link::{Link, Outgoing};
use tether_stack::dynamo::{set_fault, Fault};
use tether_stack::Stack;

mod common;
use common::{entries_with, Answer, Api};

/// Messages the simulated devices have received so far.
fn received(stack: &Stack) -> usize {
    stack.fleet().unwrap().received().len()
}

/// The request id of the first `method` call `device` received, waiting up to 10 s for it.
async fn request_received(stack: &Stack, device: &str, method: &str) -> anyhow::Result<String> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let found = stack
            .fleet()
            .unwrap()
            .received()
            .into_iter()
            .find(|r| r.device.as_str() == device && r.method.as_deref() == Some(method));
        if let Some(found) = found {
            return Ok(found.id);
        }
        ensure!(
            Instant::now() < until,
            "{device} never got its {method} request"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many `method` requests `device` has received so far.
fn requests_of(stack: &Stack, device: &str, method: &str) -> usize {
    stack
        .fleet()
        .unwrap()
        .received()
        .into_iter()
        .filter(|r| r.device.as_str() == device && r.method.as_deref() == Some(method))
        .count()
}

/// Waits until `device` has received more than `before` `method` requests.
async fn another_request_received(
    stack: &Stack,
    device: &str,
    method: &str,
    before: usize,
) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    while requests_of(stack, device, method) <= before {
        ensure!(
            Instant::now() < until,
            "{device} never got this {method} request"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Polls `probe` every 100 ms until it returns `Some`, for at most `timeout`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let until = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await? {
            return Ok(value);
        }
        ensure!(Instant::now() < until, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_unavailable(answer: &Answer) -> bool {
    answer.status == 503
        && answer.body["code"] == "UPSTREAM_UNAVAILABLE"
        && answer.headers.get("retry-after").is_some()
        && answer
            .headers
            .get("content-type")
            .is_some_and(|t| t.as_bytes() == b"application/problem+json")
}

async fn dynamodb_unavailable_before_the_publish_is_a_503_and_nothing_is_sent(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    let dynamodb = &stack.endpoints.dynamodb;
    let before = received(stack);
    let mut wrong = Vec::new();

    // The whole endpoint failing: the presence read already fails.
    set_fault(dynamodb, Some(&Fault::unavailable(&[]))).await?;
    let invoke = json!({"method": "unlock", "timeoutMs": 3000});
    let mut asks = vec![(
        "POST",
        "/devices/dev-1/invoke".to_owned(),
        Some(invoke.clone()),
    )];
    for path in [
        "/invocations/0123456789abcdef0123456789abcdef",
        "/devices/dev-1",
        "/devices/dev-1/executions",
        "/commands/reboot/executions",
        "/executions/0123456789abcdef0123456789abcdef",
    ] {
        asks.push(("GET", path.to_owned(), None));
    }
    for (method, path, body) in asks {
        let answer = api.call(method, &path, body, None).await?;
        if !is_unavailable(&answer) {
            wrong.push(format!(
                "{method} {path} with DynamoDB down: {} {}",
                answer.status, answer.body
            ));
        }
    }

    // Only the write that creates the record failing: presence reads, then nothing is sent.
    set_fault(dynamodb, Some(&Fault::unavailable(&["TransactWriteItems"]))).await?;
    let answer = api
        .call(
            "POST",
            "/devices/dev-1/invoke",
            Some(invoke.clone()),
            Some("fault-unlock-1"),
        )
        .await?;
    if !is_unavailable(&answer) {
        wrong.push(format!(
            "invoke when the record cannot be created: {} {}",
            answer.status, answer.body
        ));
    }
    let failed = set_fault(dynamodb, None).await?;
    ensure!(failed > 0, "the fault failed no DynamoDB request");
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        received(stack) == before,
        "a device got a request that has no record"
    );

    // The same key once DynamoDB is back: a fresh invocation that the device answers.
    let answer = api
        .call(
            "POST",
            "/devices/dev-1/invoke",
            Some(invoke),
            Some("fault-unlock-1"),
        )
        .await?;
    ensure!(
        answer.status == 200,
        "after recovery: {} {}",
        answer.status,
        answer.body
    );
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

/// With `operations` failing (all of them when empty), a device's reply cannot be ingested:
/// the rule's retries fail, the event is dead-lettered, the caller gets its 504; once
/// DynamoDB is back, a replay of the dead letters completes the record exactly once.
async fn replies_that_cannot_be_stored_are_dead_lettered_and_a_replay_completes_them(
    api: &Api,
    stack: &Stack,
    operations: &[&str],
    device: &str,
) -> anyhow::Result<()> {
    let iot = stack.iot().unwrap();
    let dead_before = iot.dead_letters().len();
    let payload = json!({"door": device, "operations": operations});
    let path = format!("/devices/{device}/invoke");
    let call = api.call(
        "POST",
        &path,
        Some(json!({"method": "slow", "payload": payload, "timeoutMs": 4000})),
        None,
    );
    let fault = async {
        // The device has the request (its record exists); it answers 1.5 s later.
        request_received(stack, device, "slow").await?;
        anyhow::Ok(
            set_fault(
                &stack.endpoints.dynamodb,
                Some(&Fault::unavailable(operations)),
            )
            .await?,
        )
    };
    let (answer, fault) = tokio::join!(call, fault);
    fault?;
    let answer = answer?;
    let dead = eventually(
        Duration::from_secs(20),
        "the reply dead-lettered",
        || async {
            let letters = iot.dead_letters();
            Ok((letters.len() > dead_before).then(|| letters[dead_before..].to_vec()))
        },
    )
    .await;
    // A redrive while DynamoDB still fails: ingest reports the message, which stays.
    let too_soon = stack_replay(stack).await;
    set_fault(&stack.endpoints.dynamodb, None).await?;
    let (dead, too_soon) = (dead?, too_soon?);
    ensure!(
        too_soon["delivered"] == 0 && too_soon["failed"].as_u64() >= Some(1),
        "a redrive before the store is back keeps the dead letters: {too_soon}"
    );

    ensure!(
        answer.status == 504 && answer.body["code"] == "DEVICE_TIMEOUT",
        "the caller gets the timeout, not a 503 or a 500: {} {}",
        answer.status,
        answer.body
    );
    let id = answer.body["requestId"]
        .as_str()
        .context("requestId")?
        .to_owned();
    ensure!(
        // The reply topic names the waiting instance's inbox as a last level, if it had one.
        dead.iter().any(|l| l["event"]["topic"]
            .as_str()
            .is_some_and(|t| t.starts_with(&format!("tether/replies/{device}/{id}")))
            && l["attempts"] == 3),
        "the reply, tried three times, is in the dead letters: {dead:?}"
    );
    let (status, before_replay) = api
        .send("GET", &format!("/invocations/{id}"), None, None)
        .await?;
    ensure!(status == 200, "{before_replay}");
    // PENDING, or read as timed out once well past its deadline: never the device's answer.
    ensure!(
        before_replay["status"] != "SUCCEEDED" && before_replay.get("result").is_none(),
        "the record was not changed by the failed writes: {before_replay}"
    );

    let replay: Value = stack_replay(stack).await?;
    let (_, after) = api
        .send("GET", &format!("/invocations/{id}"), None, None)
        .await?;
    let again: Value = stack_replay(stack).await?;
    let (_, after_again) = api
        .send("GET", &format!("/invocations/{id}"), None, None)
        .await?;

    ensure!(
        replay["delivered"].as_u64() >= Some(1) && replay["failed"] == 0,
        "{replay}"
    );
    ensure!(
        after["status"] == "SUCCEEDED" && after["result"] == payload,
        "the device's answer wins after the replay: {after}"
    );
    let device_entries = after["timeline"]
        .as_array()
        .context("timeline")?
        .iter()
        .filter(|e| e["source"] == "device")
        .count();
    ensure!(
        device_entries == 1,
        "one device entry in the timeline: {after}"
    );
    ensure!(again["delivered"] == 0, "nothing left to replay: {again}");
    ensure!(after_again == after, "a second replay changes nothing");
    Ok(())
}

/// `POST /_local/dead-letters/replay` of local-iot.
async fn stack_replay(stack: &Stack) -> anyhow::Result<Value> {
    let url = format!("{}/_local/dead-letters/replay", stack.endpoints.iot);
    Ok(reqwest::Client::new()
        .post(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn ingest_failures_on_the_record_write_converge_on_replay(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    // The timeline entry is written, the record update fails: the half a replay must finish.
    replies_that_cannot_be_stored_are_dead_lettered_and_a_replay_completes_them(
        api,
        stack,
        &["UpdateItem"],
        "dev-2",
    )
    .await
}

async fn ingest_failures_with_dynamodb_down_converge_on_replay(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    replies_that_cannot_be_stored_are_dead_lettered_and_a_replay_completes_them(
        api,
        stack,
        &[],
        "dev-3",
    )
    .await
}

/// Publishes one message as a device-like client that is not one of the simulated devices.
async fn publish_raw(link: &Link, topic: &str, payload: &[u8]) -> anyhow::Result<()> {
    link.publish(Outgoing {
        topic: topic.to_owned(),
        payload: payload.to_vec().into(),
        qos: 1,
        ..Default::default()
    })
    .await
}

async fn devices_that_answer_badly_do_not_change_the_right_answer(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    let (rogue, _) =
        Link::connect_as(stack.iot().unwrap().mqtt_addr(), "rogue-device", &[]).await?;
    let dead_before = stack.iot().unwrap().dead_letters().len();
    // dev-1 never answers `silent`; the rogue client answers in its place.
    let call = api.call(
        "POST",
        "/devices/dev-1/invoke",
        Some(json!({"method": "silent", "timeoutMs": 8000})),
        None,
    );
    let misbehave = async {
        let id = request_received(stack, "dev-1", "silent").await?;
        let own = format!("tether/replies/dev-1/{id}");
        // Another device answering dev-1's request, on its own reply topic.
        publish_raw(
            &rogue,
            &format!("tether/replies/dev-2/{id}"),
            br#"{"status":"SUCCEEDED","result":{"unlocked":"by dev-2"}}"#,
        )
        .await?;
        // Not JSON; a JSON reply of the wrong shape; one nested past any sane depth.
        publish_raw(&rogue, &own, b"\x00\xffnot json").await?;
        publish_raw(&rogue, &own, br#"{"status":42,"result":"<script>"}"#).await?;
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        publish_raw(
            &rogue,
            &own,
            format!(r#"{{"status":"SUCCEEDED","result":{deep}}}"#).as_bytes(),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The right answer, then the same device answering again, differently.
        publish_raw(
            &rogue,
            &own,
            br#"{"status":"SUCCEEDED","result":{"unlocked":true}}"#,
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        publish_raw(
            &rogue,
            &own,
            br#"{"status":"FAILED","result":{"unlocked":false}}"#,
        )
        .await?;
        anyhow::Ok(id)
    };
    let (answer, id) = tokio::join!(call, misbehave);
    let (answer, id) = (answer?, id?);
    ensure!(
        answer.status == 200 && answer.body["result"] == json!({"unlocked": true}),
        "the caller gets the right answer: {} {}",
        answer.status,
        answer.body
    );
    ensure!(answer.body["requestId"] == id.as_str(), "{}", answer.body);

    let record = eventually(
        Duration::from_secs(10),
        "every message ingested",
        || async {
            let (_, record) = api
                .send("GET", &format!("/invocations/{id}"), None, None)
                .await?;
            let entries = record["timeline"].as_array().map_or(0, Vec::len);
            // PENDING, DELIVERED, four rejected replies, the answer, the second answer.
            Ok((entries >= 8).then_some(record))
        },
    )
    .await?;
    let timeline = record["timeline"].as_array().context("timeline")?;
    ensure!(
        record["status"] == "SUCCEEDED" && record["result"] == json!({"unlocked": true}),
        "the first final answer stays: {record}"
    );
    let rejected: Vec<_> = timeline
        .iter()
        .filter(|e| e["status"] == "INVALID_REPLY")
        .map(|e| e["statusReason"]["reasonCode"].as_str().unwrap_or_default())
        .collect();
    ensure!(
        rejected.iter().filter(|r| **r == "WRONG_DEVICE").count() == 1
            && rejected.iter().filter(|r| **r == "INVALID_REPLY").count() == 3,
        "another device's answer and the three unusable replies (not JSON, wrong shape, too \
         deep) are recorded as rejected: {record}"
    );
    ensure!(
        timeline
            .iter()
            .any(|e| e["status"] == "FAILED" && e["source"] == "device"),
        "the second answer is kept in the history: {record}"
    );
    ensure!(
        !record.to_string().contains("by dev-2"),
        "another device's answer changes nothing: {record}"
    );
    // Malformed device input is a fact, acknowledged once: nothing is retried or parked.
    let dead = stack.iot().unwrap().dead_letters();
    ensure!(
        dead.len() == dead_before,
        "no dead letter for a device's bad messages: {:?}",
        &dead[dead_before..]
    );
    rogue.close().await;
    Ok(())
}

/// The payloads a compromised device could publish on its own reply topic to speak for
/// others (issue 19): a forged dead-letter batch, a payload naming another topic and a
/// far-future time, an execution event, an answer to another device's request. None changes
/// anything the device does not own, and none is retried.
async fn a_hostile_device_changes_nothing_it_does_not_own(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    let iot = stack.iot().unwrap();
    let dead_before = iot.dead_letters().len();
    ensure!(
        connected(api, "dev-2").await? == Some(true),
        "the victim is connected to begin with"
    );
    let (rogue, _) = Link::connect_as(iot.mqtt_addr(), "rogue-3", &[]).await?;
    let victim_offline = json!({"topic": "$aws/events/presence/disconnected/dev-2", "clientId": "dev-2", "timestamp": 999_999_999_999_999_i64, "eventType": "disconnected"});
    let planted = "0badc0de0badc0de0badc0de0badc0de";
    let planted_event = json!({
        "topic": "$aws/events/commandExecution/tether-planted/SUCCEEDED",
        "executionId": planted, "status": "SUCCEEDED",
        "targetArn": "arn:aws:iot:us-east-1:000000000000:thing/dev-2",
        "timestamp": 999_999_999_999_999_i64,
    });
    // dev-1 never answers `silent`: the rogue tries to answer for it.
    let call = api.call(
        "POST",
        "/devices/dev-1/invoke",
        Some(json!({"method": "silent", "timeoutMs": 3000})),
        None,
    );
    // Earlier scenarios called `silent` on dev-1 too: this call's request is the new one.
    let seen: Vec<String> = stack
        .fleet()
        .unwrap()
        .received()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let attack = async {
        let until = Instant::now() + Duration::from_secs(10);
        let victim_call = loop {
            let fresh = stack.fleet().unwrap().received().into_iter().find(|r| {
                r.device.as_str() == "dev-1"
                    && r.method.as_deref() == Some("silent")
                    && !seen.contains(&r.id)
            });
            if let Some(fresh) = fresh {
                break fresh.id;
            }
            ensure!(Instant::now() < until, "dev-1 never got the silent request");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let own = |id: &str| format!("tether/replies/rogue-3/{id}");
        let batch = |event: &Value| json!({"Records": [{"messageId": "forged", "body": json!({"requestPayload": event}).to_string()}]});
        let payloads = [
            batch(&victim_offline),
            batch(&planted_event),
            json!({"status": "SUCCEEDED", "topic": "$aws/events/presence/disconnected/dev-2", "receivedAt": 999_999_999_999_999_i64}),
            json!({"status": "SUCCEEDED", "topic": format!("tether/replies/dev-1/{victim_call}"), "result": {"by": "rogue"}}),
            planted_event.clone(),
        ];
        for payload in &payloads {
            publish_raw(
                &rogue,
                &own("0123456789abcdef0123456789abcdef"),
                payload.to_string().as_bytes(),
            )
            .await?;
        }
        // An answer to dev-1's request, on the rogue's own reply topic.
        publish_raw(
            &rogue,
            &own(&victim_call),
            json!({"status": "SUCCEEDED", "result": {"by": "rogue"}})
                .to_string()
                .as_bytes(),
        )
        .await?;
        // Straight onto the reserved event topics, as AWS IoT refuses too (the broker does).
        publish_raw(
            &rogue,
            "$aws/events/presence/disconnected/dev-2",
            victim_offline.to_string().as_bytes(),
        )
        .await
        .ok();
        publish_raw(
            &rogue,
            "$aws/events/commandExecution/tether-planted/SUCCEEDED",
            planted_event.to_string().as_bytes(),
        )
        .await
        .ok();
        // A reply topic whose request id breaks the rules, and a client outside the id rules.
        publish_raw(&rogue, "tether/replies/rogue-3/bad$id", b"{}").await?;
        let (odd, _) = Link::connect_as(iot.mqtt_addr(), "not a device!", &[]).await?;
        odd.close().await;
        anyhow::Ok(victim_call)
    };
    let (answer, victim_call) = tokio::join!(call, attack);
    let (answer, victim_call) = (answer?, victim_call?);
    tokio::time::sleep(Duration::from_secs(2)).await;

    ensure!(
        answer.status == 504 && answer.body["code"] == "DEVICE_TIMEOUT",
        "dev-1 never answered; the rogue's answer does not count: {} {}",
        answer.status,
        answer.body
    );
    let (_, record) = api
        .send("GET", &format!("/invocations/{victim_call}"), None, None)
        .await?;
    ensure!(
        record["status"] == "TIMED_OUT" && record["result"].is_null(),
        "dev-1's invocation shows no answer from the rogue: {record}"
    );
    ensure!(
        record["timeline"].as_array().is_some_and(|t| t
            .iter()
            .any(|e| e["statusReason"]["reasonCode"] == "WRONG_DEVICE")),
        "the rogue's answer is kept as rejected: {record}"
    );
    ensure!(
        connected(api, "dev-2").await? == Some(true),
        "the victim is still connected"
    );
    let (status, body) = api
        .send("GET", &format!("/executions/{planted}"), None, None)
        .await?;
    ensure!(status == 404, "no execution was planted: {status} {body}");
    let (status, body) = api
        .send(
            "GET",
            "/invocations/0123456789abcdef0123456789abcdef",
            None,
            None,
        )
        .await?;
    ensure!(
        status == 404,
        "replies to no invocation leave nothing: {status} {body}"
    );
    let (_, listed) = api
        .send("GET", "/devices/dev-2/executions", None, None)
        .await?;
    ensure!(
        !listed.to_string().contains(planted),
        "nothing planted in a listing: {listed}"
    );
    let dead = iot.dead_letters();
    ensure!(
        dead.len() == dead_before,
        "hostile input is acknowledged, not retried or dead-lettered: {:?}",
        &dead[dead_before..]
    );
    rogue.close().await;
    Ok(())
}

async fn connected(api: &Api, device: &str) -> anyhow::Result<Option<bool>> {
    let (status, body) = api
        .send("GET", &format!("/devices/{device}"), None, None)
        .await?;
    Ok((status == 200).then(|| body["connected"] == true))
}

/// The devices the outage scenarios call.
const SLOW_DEVICES: [&str; 3] = ["dev-1", "dev-2", "dev-3"];

/// `slow` calls (`{key: device}` as payload) to each of [`SLOW_DEVICES`] at once, and `fault`
/// started once every device holds its request (earlier scenarios sent `slow` too: what counts
/// is that each device got this one); the three answers and what the fault came to.
async fn slow_calls_during<T, F, Fut>(
    api: &Api,
    stack: &Stack,
    key: &str,
    timeout_ms: u64,
    fault: F,
) -> ([anyhow::Result<Answer>; 3], anyhow::Result<T>)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let before: Vec<usize> = SLOW_DEVICES
        .iter()
        .map(|d| requests_of(stack, d, "slow"))
        .collect();
    let call = |device: &'static str| async move {
        api.call(
            "POST",
            &format!("/devices/{device}/invoke"),
            Some(json!({"method": "slow", "payload": {key: device}, "timeoutMs": timeout_ms})),
            None,
        )
        .await
    };
    let calls = async {
        let (a, b, c) = tokio::join!(
            call(SLOW_DEVICES[0]),
            call(SLOW_DEVICES[1]),
            call(SLOW_DEVICES[2])
        );
        [a, b, c]
    };
    let faulted = async {
        for (device, before) in SLOW_DEVICES.iter().zip(&before) {
            another_request_received(stack, device, "slow", *before).await?;
        }
        fault().await
    };
    tokio::join!(calls, faulted)
}

async fn a_gateway_outage_ends_calls_in_flight_in_504_and_calls_after_it_succeed(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    // Every device is dropped with its request in hand, before it can answer.
    let outage = || async {
        let down = stack.iot().unwrap().outage(Duration::from_secs(4));
        let during = async {
            eventually(
                Duration::from_secs(4),
                "dev-1 recorded as disconnected",
                || async { Ok((connected(api, "dev-1").await? == Some(false)).then_some(())) },
            )
            .await?;
            api.call(
                "POST",
                "/devices/dev-1/invoke",
                Some(json!({"method": "a"})),
                None,
            )
            .await
        };
        let (down, during) = tokio::join!(down, during);
        down?;
        during
    };
    let (answers, during) = slow_calls_during(api, stack, "to", 2500, outage).await;
    let during = during?;
    for (device, answer) in SLOW_DEVICES.iter().zip(answers) {
        let answer = answer?;
        ensure!(
            answer.status == 504 && answer.body["code"] == "DEVICE_TIMEOUT",
            "{device}'s call in flight: {} {}",
            answer.status,
            answer.body
        );
    }
    ensure!(
        during.status == 404 && during.body["code"] == "DEVICE_NOT_CONNECTED",
        "a call during the outage is refused at once: {} {}",
        during.status,
        during.body
    );

    for device in SLOW_DEVICES {
        eventually(
            Duration::from_secs(30),
            &format!("{device} back"),
            || async { Ok((connected(api, device).await? == Some(true)).then_some(())) },
        )
        .await?;
        let answer = api
            .call(
                "POST",
                &format!("/devices/{device}/invoke"),
                Some(json!({"method": "ping", "payload": {"after": device}, "timeoutMs": 5000})),
                None,
            )
            .await?;
        ensure!(
            answer.status == 200 && answer.body["result"] == json!({"after": device}),
            "{device} after the outage: {} {}",
            answer.status,
            answer.body
        );
    }
    Ok(())
}

/// A broker outage while devices hold requests they answer during it (`slow` answers 1.5 s
/// after the request; the broker is away for 3 s): a device sends its answer once it is back,
/// and the answer reaches its call — by the instance's inbox once that has subscribed again,
/// or by the reply rule, `ingest` and the record — which is answered once, with one final entry
/// in its timeline. Only an answer the device's client dropped with its connection (its sent
/// log says which the broker took) may leave its call without one, in a 504.
async fn a_broker_outage_loses_no_reply_and_answers_each_call_once(
    api: &Api,
    stack: &Stack,
) -> anyhow::Result<()> {
    let outage = || stack.iot().unwrap().outage(Duration::from_secs(3));
    let (answers, outage) = slow_calls_during(api, stack, "kept", 20_000, outage).await;
    outage?;
    let mut answered = 0;
    for (device, answer) in SLOW_DEVICES.iter().zip(answers) {
        let answer = answer?;
        let id = answer.body["requestId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let answered_here = answer.status == 200;
        if answered_here {
            ensure!(
                answer.body["result"] == json!({"kept": device}),
                "{device}'s call got another answer: {}",
                answer.body
            );
            answered += 1;
        } else {
            // Only a device that never got its answer out may leave its call without one.
            ensure!(
                answer.status == 504,
                "{device}'s call: {} {}",
                answer.status,
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            let sent = stack
                .fleet()
                .unwrap()
                .sent()
                .iter()
                .any(|s| s.device.as_str() == *device && s.id == id);
            ensure!(
                !sent,
                "{device}'s answer was taken by the broker, yet its call got a 504"
            );
        }
        let record = eventually(Duration::from_secs(10), "the record", || async {
            let (status, body) = api
                .send("GET", &format!("/invocations/{id}"), None, None)
                .await?;
            Ok((status == 200).then_some(body))
        })
        .await?;
        let finals = entries_with(&record, "SUCCEEDED");
        ensure!(
            finals == usize::from(answered_here),
            "{device}: {finals} SUCCEEDED entries in {record}"
        );
    }
    // The devices keep their answers through the outage: at least one must have come through,
    // or the scenario proved nothing.
    ensure!(answered > 0, "no device's answer came through the outage");
    Ok(())
}

/// Clears any fault a scenario left behind, failed or not, before the next one runs.
fn clear_faults(stack: &Stack) -> BoxFuture<'_, ()> {
    Box::pin(async {
        let _ = set_fault(&stack.endpoints.dynamodb, None).await;
    })
}

fn main() -> ExitCode {
    common::run_scenarios(
        "faults",
        vec![
            scenario!(dynamodb_unavailable_before_the_publish_is_a_503_and_nothing_is_sent),
            scenario!(ingest_failures_on_the_record_write_converge_on_replay),
            scenario!(ingest_failures_with_dynamodb_down_converge_on_replay),
            scenario!(devices_that_answer_badly_do_not_change_the_right_answer),
            scenario!(a_hostile_device_changes_nothing_it_does_not_own),
            scenario!(a_gateway_outage_ends_calls_in_flight_in_504_and_calls_after_it_succeed),
            scenario!(a_broker_outage_loses_no_reply_and_answers_each_call_once),
        ],
        Some(clear_faults),
    )
}
