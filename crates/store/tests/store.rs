//! The store against the local DynamoDB endpoint (dynoxide in process, started by the testkit;
//! or the endpoint in `AWS_ENDPOINT_URL_DYNAMODB`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;

use serde_json::json;
use tether_domain::api::ListQuery;
use tether_domain::topics::{Presence, TargetKind};
use tether_domain::{
    CommandId, DeviceId, ExecutionId, ExecutionStatus, InvocationStatus, MethodName, RequestId,
    Source, StatusReason,
};
use tether_store::{ListBy, PresenceEvent, RecordKey, RecordMeta, StatusChange, Store, StoreError};
use tether_testkit::LocalDynamo;

struct Harness {
    store: Store,
    _server: Arc<LocalDynamo>,
}

async fn harness() -> Harness {
    let server = LocalDynamo::shared();
    Harness {
        store: server.fresh_store().await,
        _server: server,
    }
}

fn device(name: &str) -> DeviceId {
    DeviceId::parse(name).unwrap()
}

fn invocation_meta(d: &str) -> RecordMeta {
    RecordMeta::Invocation {
        device: device(d),
        method: MethodName::parse("reboot").unwrap(),
    }
}

fn execution_meta(command: &str, target: &str) -> RecordMeta {
    RecordMeta::Execution {
        command: CommandId::parse(command).unwrap(),
        target: device(target),
        target_kind: TargetKind::Thing,
        parameters: None,
    }
}

async fn pending_invocation(store: &Store, at: i64) -> RecordKey {
    let key = RecordKey::Invocation(RequestId::random());
    let outcome = store
        .apply(
            &key,
            &StatusChange::new(InvocationStatus::Pending, Source::Cloud, at),
            Some(&invocation_meta("dev-1")),
        )
        .await
        .unwrap();
    assert!(outcome.applied && outcome.new_event);
    key
}

/// A new PENDING invocation of `open` on dev-1, created at 1 s with no deadline to speak of.
async fn open_invocation(store: &Store) -> RequestId {
    let id = RequestId::random();
    store
        .begin_invocation(
            &id,
            &device("dev-1"),
            &MethodName::parse("open").unwrap(),
            "h",
            1_000,
            i64::MAX,
        )
        .await
        .unwrap();
    id
}

fn request_id(key: &RecordKey) -> &RequestId {
    match key {
        RecordKey::Invocation(id) => id,
        RecordKey::Execution(_) => panic!("not an invocation"),
    }
}

#[tokio::test]
async fn answered_invocation_shows_result_and_timeline() {
    let h = harness().await;
    let key = pending_invocation(&h.store, 1_000).await;

    let reply = StatusChange::new(InvocationStatus::Succeeded, Source::Device, 1_250)
        .with_result(Some(json!({"on": true})));
    let outcome = h.store.apply(&key, &reply, None).await.unwrap();

    assert!(outcome.applied);
    let record = h.store.invocation(request_id(&key)).await.unwrap().unwrap();
    assert_eq!(record.status, "SUCCEEDED");
    assert_eq!(record.device_id, "dev-1");
    assert_eq!(record.method, "reboot");
    assert_eq!(record.result, Some(json!({"on": true})));
    assert_eq!(record.created_at, "1970-01-01T00:00:01.000Z");
    assert_eq!(
        record.completed_at.as_deref(),
        Some("1970-01-01T00:00:01.250Z")
    );
    let timeline = record.timeline.unwrap();
    let statuses: Vec<_> = timeline
        .iter()
        .map(|e| (e.status.as_str(), e.source.as_str()))
        .collect();
    assert_eq!(statuses, [("PENDING", "cloud"), ("SUCCEEDED", "device")]);
}

#[tokio::test]
async fn duplicate_event_writes_nothing_new() {
    let h = harness().await;
    let key = pending_invocation(&h.store, 1_000).await;
    let reply = StatusChange::new(InvocationStatus::Failed, Source::Device, 1_100)
        .with_reason(Some(StatusReason::new("BUSY", Some("try later".into()))));

    let first = h.store.apply(&key, &reply, None).await.unwrap();
    let second = h.store.apply(&key, &reply, None).await.unwrap();

    assert!(first.applied && first.new_event);
    assert!(!second.applied && !second.new_event);
    let record = h.store.invocation(request_id(&key)).await.unwrap().unwrap();
    assert_eq!(record.timeline.unwrap().len(), 2);
    assert_eq!(record.status_reason.unwrap().reason_code, "BUSY");
}

#[tokio::test]
async fn reply_for_unknown_invocation_is_kept_in_the_timeline_only() {
    let h = harness().await;
    let key = RecordKey::Invocation(RequestId::random());
    let reply = StatusChange::new(InvocationStatus::Succeeded, Source::Device, 5);

    let outcome = h.store.apply(&key, &reply, None).await.unwrap();

    assert!(outcome.new_event && !outcome.applied);
    assert!(
        h.store
            .invocation(request_id(&key))
            .await
            .unwrap()
            .is_none(),
        "no record is made up"
    );
}

#[tokio::test]
async fn late_reply_replaces_cloud_timeout_and_then_nothing_moves() {
    let h = harness().await;
    let key = pending_invocation(&h.store, 1_000).await;
    let timeout = StatusChange::new(InvocationStatus::TimedOut, Source::Cloud, 1_200)
        .with_reason(Some(StatusReason::no_response_from_device()));
    assert!(h.store.apply(&key, &timeout, None).await.unwrap().applied);
    let after_timeout = h
        .store
        .invocation_status(request_id(&key))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after_timeout.status, "TIMED_OUT");
    assert_eq!(
        after_timeout.completed_at, None,
        "a cloud timeout does not complete the record"
    );

    let late = StatusChange::new(InvocationStatus::Succeeded, Source::Device, 1_900)
        .with_result(Some(json!(42)));
    assert!(h.store.apply(&key, &late, None).await.unwrap().applied);
    let later = StatusChange::new(InvocationStatus::Failed, Source::Device, 2_000);
    assert!(
        !h.store.apply(&key, &later, None).await.unwrap().applied,
        "terminal is never left"
    );

    let record = h.store.invocation(request_id(&key)).await.unwrap().unwrap();
    assert_eq!(record.status, "SUCCEEDED");
    assert_eq!(
        record.status_reason, None,
        "the timeout's reason went with it"
    );
    assert_eq!(record.result, Some(json!(42)));
    assert_eq!(
        record.timeline.unwrap().len(),
        4,
        "every report is in the history"
    );
}

#[tokio::test]
async fn two_concurrent_final_reports_one_wins_and_both_are_kept() {
    let h = harness().await;
    for round in 0..5 {
        let key = pending_invocation(&h.store, 1_000).await;
        let succeeded =
            StatusChange::new(InvocationStatus::Succeeded, Source::Device, 1_500 + round);
        let failed = StatusChange::new(InvocationStatus::Failed, Source::Device, 1_500 + round);

        let (a, b) = tokio::join!(
            h.store.apply(&key, &succeeded, None),
            h.store.apply(&key, &failed, None)
        );

        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            a.applied ^ b.applied,
            "exactly one writer wins (round {round})"
        );
        let record = h.store.invocation(request_id(&key)).await.unwrap().unwrap();
        let winner = if a.applied { "SUCCEEDED" } else { "FAILED" };
        assert_eq!(record.status, winner);
        assert_eq!(
            record.timeline.unwrap().len(),
            3,
            "the loser is still in the history"
        );
    }
}

#[tokio::test]
async fn execution_event_before_the_start_record_still_converges() {
    let h = harness().await;
    let id = ExecutionId::random();
    let key = RecordKey::Execution(id.clone());
    let meta = execution_meta("unlock", "car-1");
    let start_meta = RecordMeta::Execution {
        command: CommandId::parse("unlock").unwrap(),
        target: device("car-1"),
        target_kind: TargetKind::Thing,
        parameters: Some(json!({"door": {"S": "front"}})),
    };

    // The device's progress report is ingested before the start call records CREATED.
    let progress = StatusChange::new(ExecutionStatus::InProgress, Source::Device, 2_000);
    assert!(
        h.store
            .apply(&key, &progress, Some(&meta))
            .await
            .unwrap()
            .applied
    );
    let created = StatusChange::new(ExecutionStatus::Created, Source::Cloud, 1_000);
    assert!(
        !h.store
            .apply(&key, &created, Some(&start_meta))
            .await
            .unwrap()
            .applied
    );

    let record = h.store.execution(&id).await.unwrap().unwrap();
    assert_eq!(record.status, "IN_PROGRESS");
    assert_eq!(
        record.created_at, "1970-01-01T00:00:01.000Z",
        "creation time comes from CREATED"
    );
    assert_eq!(record.parameters, Some(json!({"door": {"S": "front"}})));
    assert_eq!(record.command_id, "unlock");
    assert_eq!(record.target, "car-1");
}

#[tokio::test]
async fn execution_result_is_stored_only_once_terminal() {
    let h = harness().await;
    let id = ExecutionId::random();
    let key = RecordKey::Execution(id.clone());
    let meta = execution_meta("unlock", "car-1");
    h.store
        .apply(
            &key,
            &StatusChange::new(ExecutionStatus::Created, Source::Cloud, 1),
            Some(&meta),
        )
        .await
        .unwrap();

    assert!(!h
        .store
        .set_execution_result(&id, &json!({"ok": {"B": true}}))
        .await
        .unwrap());
    h.store
        .apply(
            &key,
            &StatusChange::new(ExecutionStatus::Succeeded, Source::Device, 2),
            Some(&meta),
        )
        .await
        .unwrap();
    assert!(h
        .store
        .set_execution_result(&id, &json!({"ok": {"B": true}}))
        .await
        .unwrap());

    let record = h.store.execution(&id).await.unwrap().unwrap();
    assert_eq!(record.result, Some(json!({"ok": {"B": true}})));
}

/// Starts `count` executions of `command` on `target`, created 1 s apart from `first_ms`.
async fn start_executions(
    store: &Store,
    command: &str,
    target: &str,
    first_ms: i64,
    count: i64,
) -> Vec<ExecutionId> {
    let mut ids = Vec::new();
    for i in 0..count {
        let id = ExecutionId::random();
        let change = StatusChange::new(
            ExecutionStatus::Created,
            Source::Cloud,
            first_ms + i * 1_000,
        );
        store
            .apply(
                &RecordKey::Execution(id.clone()),
                &change,
                Some(&execution_meta(command, target)),
            )
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

async fn collect_pages(
    store: &Store,
    by: &ListBy,
    status: Option<ExecutionStatus>,
    limit: u32,
) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut token = None;
    loop {
        let query = ListQuery {
            status,
            limit,
            next_token: token.take(),
        };
        let page = store.list_executions(by, &query).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= limit as usize);
        assert!(
            page.items.iter().all(|r| r.timeline.is_none()),
            "lists carry no timelines"
        );
        ids.extend(page.items.into_iter().map(|r| r.execution_id));
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
        assert!(pages < 20, "pagination must end");
    }
    (ids, pages)
}

#[tokio::test]
async fn per_device_listing_pages_newest_first() {
    let h = harness().await;
    let mine = start_executions(&h.store, "unlock", "car-1", 10_000, 7).await;
    start_executions(&h.store, "unlock", "car-2", 10_500, 2).await;

    let (ids, pages) = collect_pages(&h.store, &ListBy::Device(device("car-1")), None, 3).await;

    let newest_first: Vec<String> = mine.iter().rev().map(|id| id.to_string()).collect();
    assert_eq!(ids, newest_first);
    assert!(
        pages >= 3,
        "7 items at 3 a page take at least 3 pages, took {pages}"
    );
}

#[tokio::test]
async fn per_command_listing_filters_by_status_across_pages() {
    let h = harness().await;
    let ids = start_executions(&h.store, "blink", "lamp-1", 50_000, 4).await;
    let others = start_executions(&h.store, "blink", "lamp-2", 50_100, 4).await;
    start_executions(&h.store, "other", "lamp-1", 50_200, 3).await;
    let meta = execution_meta("blink", "lamp-1");
    for id in [&ids[0], &ids[2]] {
        let done = StatusChange::new(ExecutionStatus::Succeeded, Source::Device, 60_000);
        h.store
            .apply(&RecordKey::Execution(id.clone()), &done, Some(&meta))
            .await
            .unwrap();
    }

    let by = ListBy::Command(CommandId::parse("blink").unwrap());
    let (all, _) = collect_pages(&h.store, &by, None, 3).await;
    let (succeeded, _) = collect_pages(&h.store, &by, Some(ExecutionStatus::Succeeded), 1).await;

    assert_eq!(all.len(), 8);
    assert!(others.iter().all(|id| all.contains(&id.to_string())));
    assert_eq!(succeeded, vec![ids[2].to_string(), ids[0].to_string()]);
}

#[tokio::test]
async fn a_token_cannot_be_used_on_another_partition() {
    let h = harness().await;
    start_executions(&h.store, "unlock", "car-1", 1_000, 3).await;
    let first = h
        .store
        .list_executions(
            &ListBy::Device(device("car-1")),
            &ListQuery {
                status: None,
                limit: 1,
                next_token: None,
            },
        )
        .await
        .unwrap();
    let token = first.next_token.expect("more than one page");

    let stolen = ListQuery {
        status: None,
        limit: 1,
        next_token: Some(token.clone()),
    };
    let other_device = h
        .store
        .list_executions(&ListBy::Device(device("car-9")), &stolen)
        .await;
    let other_index = h
        .store
        .list_executions(
            &ListBy::Command(CommandId::parse("unlock").unwrap()),
            &stolen,
        )
        .await;
    let garbage = ListQuery {
        status: None,
        limit: 1,
        next_token: Some("bm90LWEtdG9rZW4".into()),
    };

    assert!(matches!(other_device, Err(StoreError::InvalidToken)));
    assert!(matches!(other_index, Err(StoreError::InvalidToken)));
    assert!(matches!(
        h.store
            .list_executions(&ListBy::Device(device("car-1")), &garbage)
            .await,
        Err(StoreError::InvalidToken)
    ));
    assert_eq!(StoreError::InvalidToken.to_api().status(), 400);
}

#[tokio::test]
async fn newest_presence_event_wins_in_any_order() {
    let h = harness().await;
    let event = |presence, at_ms, reason: Option<&str>| PresenceEvent {
        device: device("dev-7"),
        presence,
        at_ms,
        session: Some("s1".into()),
        disconnect_reason: reason.map(str::to_owned),
    };
    assert!(h
        .store
        .connectivity(&device("dev-7"))
        .await
        .unwrap()
        .is_none());

    assert!(h
        .store
        .record_presence(&event(
            Presence::Disconnected,
            3_000,
            Some("CLIENT_INITIATED_DISCONNECT")
        ))
        .await
        .unwrap());
    assert!(
        !h.store
            .record_presence(&event(Presence::Connected, 2_000, None))
            .await
            .unwrap(),
        "older event loses"
    );
    assert!(!h
        .store
        .record_presence(&event(
            Presence::Disconnected,
            3_000,
            Some("CLIENT_INITIATED_DISCONNECT")
        ))
        .await
        .unwrap());

    let state = h
        .store
        .connectivity(&device("dev-7"))
        .await
        .unwrap()
        .unwrap();
    assert!(!state.connected);
    assert_eq!(state.since.as_deref(), Some("1970-01-01T00:00:03.000Z"));
    assert_eq!(
        state.disconnect_reason.as_deref(),
        Some("CLIENT_INITIATED_DISCONNECT")
    );

    assert!(h
        .store
        .record_presence(&event(Presence::Connected, 4_000, None))
        .await
        .unwrap());
    let state = h
        .store
        .connectivity(&device("dev-7"))
        .await
        .unwrap()
        .unwrap();
    assert!(state.connected);
    assert_eq!(state.disconnect_reason, None);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transient_503() {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "t", "t", None, None, "t",
        ))
        // Port 9 on loopback: nothing listens there.
        .endpoint_url("http://127.0.0.1:9")
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&config), "missing");

    let err = store
        .invocation_status(&RequestId::random())
        .await
        .unwrap_err();

    assert!(err.is_transient(), "{err:?}");
    assert_eq!(err.to_api().code(), "UPSTREAM_UNAVAILABLE");
}

#[tokio::test]
async fn begin_invocation_writes_once_and_reports_the_stored_fingerprint() {
    let h = harness().await;
    let id = RequestId::random();
    let (dev, method) = (device("dev-1"), MethodName::parse("reboot").unwrap());

    let first = h
        .store
        .begin_invocation(&id, &dev, &method, "hash-a", 1_000, i64::MAX)
        .await
        .unwrap();
    let second = h
        .store
        .begin_invocation(&id, &dev, &method, "hash-b", 2_000, i64::MAX)
        .await
        .unwrap();

    assert_eq!(first, tether_store::Begin::Created);
    assert_eq!(
        second,
        tether_store::Begin::Existing {
            request_hash: Some("hash-a".into()),
            device: Some("dev-1".into())
        }
    );
    let record = h.store.invocation(&id).await.unwrap().unwrap();
    assert_eq!(record.status, "PENDING");
    assert_eq!(record.created_at, "1970-01-01T00:00:01.000Z");
    assert_eq!(record.timeline.unwrap().len(), 1, "the retry wrote nothing");
}

#[tokio::test]
async fn a_device_cannot_answer_another_devices_invocation() {
    let h = harness().await;
    let id = open_invocation(&h.store).await;
    let reply = StatusChange::new(InvocationStatus::Succeeded, Source::Device, 1_100);

    let intruder = h
        .store
        .apply_reply(&id, &device("dev-2"), &reply)
        .await
        .unwrap();
    let owner = h
        .store
        .apply_reply(&id, &device("dev-1"), &reply)
        .await
        .unwrap();

    let again = h
        .store
        .apply_reply(&id, &device("dev-1"), &reply)
        .await
        .unwrap();

    assert!(!intruder.applied);
    assert!(owner.applied);
    assert!(
        !again.applied && !again.new_event,
        "a repeated reply writes nothing"
    );
    let record = h.store.invocation(&id).await.unwrap().unwrap();
    assert_eq!(record.status, "SUCCEEDED");
    let timeline = record.timeline.unwrap();
    let entries: Vec<_> = timeline
        .iter()
        .map(|e| {
            (
                e.status.as_str(),
                e.status_reason.as_ref().map(|r| r.reason_code.as_str()),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("PENDING", None),
            ("INVALID_REPLY", Some("WRONG_DEVICE")),
            ("SUCCEEDED", None)
        ],
        "the intruder's answer is kept as rejected, never as an answer"
    );
}

#[tokio::test]
async fn the_same_reply_by_the_inbox_and_by_the_rule_is_in_the_timeline_once() {
    let h = harness().await;
    let id = open_invocation(&h.store).await;
    let dev1 = device("dev-1");
    let progress = |at, done: &str| {
        StatusChange::new(InvocationStatus::InProgress, Source::Device, at)
            .with_reason(Some(StatusReason::new("PROGRESS", Some(done.into()))))
    };
    let answer = |at| StatusChange::new(InvocationStatus::Succeeded, Source::Device, at);
    let apply = |change: StatusChange| {
        let (store, id, dev1) = (&h.store, &id, &dev1);
        async move { store.apply_reply(id, dev1, &change).await.unwrap() }
    };

    // The waiting instance records a progress report at its own time; the rule path brings the
    // same report later, stamped earlier by the broker: outranked, and no second entry.
    assert!(apply(progress(1_200, "50%")).await.applied);
    let again = apply(progress(1_150, "50%")).await;
    assert!(!again.applied && !again.new_event);
    assert!(apply(answer(1_400)).await.applied);
    // After the answer: a progress report not seen before is kept in the timeline (the record
    // stays final); the answer again adds nothing.
    let late = apply(progress(1_300, "80%")).await;
    assert!(!late.applied && late.new_event);
    let answer_again = apply(answer(1_350)).await;
    assert!(!answer_again.applied && !answer_again.new_event);

    let record = h.store.invocation(&id).await.unwrap().unwrap();
    assert_eq!(record.status, "SUCCEEDED");
    let entries: Vec<_> = record
        .timeline
        .unwrap()
        .iter()
        .map(|e| {
            (
                e.status.clone(),
                e.status_reason
                    .as_ref()
                    .and_then(|r| r.reason_description.clone()),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("PENDING".to_owned(), None),
            ("IN_PROGRESS".to_owned(), Some("50%".to_owned())),
            ("IN_PROGRESS".to_owned(), Some("80%".to_owned())),
            ("SUCCEEDED".to_owned(), None),
        ]
    );
    assert!(tether_store::Store::was_delivered(&h.store, &id)
        .await
        .unwrap());
}

#[tokio::test]
async fn an_invocation_left_pending_past_its_deadline_reads_as_timed_out_until_a_reply() {
    let h = harness().await;
    let now = tether_domain::clock::now_ms();
    let (overdue, open) = (RequestId::random(), RequestId::random());
    let method = MethodName::parse("open").unwrap();
    // No TIMED_OUT was ever written for `overdue` (as when DynamoDB failed at its deadline).
    for (id, deadline) in [(&overdue, now - 60_000), (&open, now + 60_000)] {
        h.store
            .begin_invocation(id, &device("dev-1"), &method, "h", now - 70_000, deadline)
            .await
            .unwrap();
    }

    let timed_out = h.store.invocation(&overdue).await.unwrap().unwrap();
    let pending = h.store.invocation_status(&open).await.unwrap().unwrap();
    let late = StatusChange::new(InvocationStatus::Succeeded, Source::Device, now);
    let outcome = h
        .store
        .apply_reply(&overdue, &device("dev-1"), &late)
        .await
        .unwrap();
    let answered = h.store.invocation_status(&overdue).await.unwrap().unwrap();

    assert_eq!(timed_out.status, "TIMED_OUT");
    assert_eq!(
        timed_out.status_reason.unwrap().reason_code,
        "$NO_RESPONSE_FROM_DEVICE"
    );
    assert_eq!(
        timed_out.completed_at,
        Some(tether_domain::clock::rfc3339(now - 60_000))
    );
    assert_eq!(pending.status, "PENDING", "not before its deadline");
    assert!(outcome.applied, "a late reply still completes it");
    assert_eq!(answered.status, "SUCCEEDED");
}

#[tokio::test]
async fn creation_reported_twice_is_one_timeline_entry() {
    let h = harness().await;
    let id = ExecutionId::random();
    let key = RecordKey::Execution(id.clone());
    let meta = execution_meta("unlock", "car-1");

    // The start call records CREATED; AWS IoT's CREATED event arrives with its own clock.
    h.store
        .apply(
            &key,
            &StatusChange::new(ExecutionStatus::Created, Source::Cloud, 1_000),
            Some(&meta),
        )
        .await
        .unwrap();
    let again = h
        .store
        .apply(
            &key,
            &StatusChange::new(ExecutionStatus::Created, Source::Cloud, 990),
            Some(&meta),
        )
        .await
        .unwrap();

    assert!(!again.new_event);
    let record = h.store.execution(&id).await.unwrap().unwrap();
    assert_eq!(record.timeline.unwrap().len(), 1);
    assert_eq!(
        record.created_at, "1970-01-01T00:00:00.990Z",
        "the earliest report dates the creation"
    );
}

/// A cancelled transaction leaves nothing behind (an earlier local endpoint, moto, needed a
/// patched rollback for this).
#[tokio::test]
async fn a_cancelled_transaction_leaves_every_item_as_it_was() {
    use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
    let h = harness().await;
    let (client, table) = (h.store.client(), h.store.table());
    let key = |pk: &str| {
        [
            ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
            ("sk".to_owned(), AttributeValue::S("T".to_owned())),
        ]
    };
    client
        .put_item()
        .table_name(table)
        .set_item(Some(
            key("kept")
                .into_iter()
                .chain([("v".to_owned(), AttributeValue::S("old".into()))])
                .collect(),
        ))
        .send()
        .await
        .unwrap();
    let put = |pk: &str| {
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(key(pk).into_iter().collect()))
                    .build()
                    .unwrap(),
            )
            .build()
    };
    let failing_update = TransactWriteItem::builder()
        .update(
            Update::builder()
                .table_name(table)
                .set_key(Some(key("kept").into_iter().collect()))
                .update_expression("SET v = :new")
                .condition_expression("v = :other")
                .expression_attribute_values(":new", AttributeValue::S("new".into()))
                .expression_attribute_values(":other", AttributeValue::S("other".into()))
                .build()
                .unwrap(),
        )
        .build();

    let cancelled = client
        .transact_write_items()
        .transact_items(put("first"))
        .transact_items(failing_update)
        .transact_items(put("third"))
        .send()
        .await;

    assert!(
        cancelled.is_err(),
        "the condition fails, so the transaction is cancelled"
    );
    let read = |pk: &'static str| {
        client
            .get_item()
            .table_name(table)
            .set_key(Some(key(pk).into_iter().collect()))
            .consistent_read(true)
            .send()
    };
    for absent in ["first", "third"] {
        let got = read(absent).await.unwrap();
        assert!(got.item.is_none(), "{absent} was rolled back");
    }
    let kept = read("kept").await.unwrap();
    assert_eq!(kept.item.unwrap()["v"], AttributeValue::S("old".into()));
}

/// Every item stored under an invocation's partition (the record and its timeline).
async fn items_of(store: &Store, id: &RequestId) -> usize {
    store
        .client()
        .query()
        .table_name(store.table())
        .consistent_read(true)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("INV#{id}")),
        )
        .send()
        .await
        .unwrap()
        .count() as usize
}

#[tokio::test]
async fn replies_for_invocations_that_do_not_exist_leave_no_trace() {
    let h = harness().await;
    let id = RequestId::random();
    let reply = StatusChange::new(InvocationStatus::Succeeded, Source::Device, 1_100);
    let malformed = StatusChange::rejected_reply(
        1_100,
        StatusReason::new(tether_store::INVALID_REPLY, Some("not JSON".into())),
    );

    let answer = h
        .store
        .apply_reply(&id, &device("dev-1"), &reply)
        .await
        .unwrap();
    let rejected = h
        .store
        .reject_reply(&id, &device("dev-1"), &malformed)
        .await
        .unwrap();

    assert!(!answer.applied && !answer.new_event);
    assert!(!rejected);
    assert_eq!(
        items_of(&h.store, &id).await,
        0,
        "no timeline grows under an unknown id"
    );
    assert!(h.store.invocation(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_malformed_reply_is_kept_for_its_invocation_and_as_wrong_device_from_another() {
    let h = harness().await;
    let id = open_invocation(&h.store).await;
    let malformed = |at| {
        StatusChange::rejected_reply(
            at,
            StatusReason::new(tether_store::INVALID_REPLY, Some("not JSON".into())),
        )
    };

    assert!(h
        .store
        .reject_reply(&id, &device("dev-1"), &malformed(1_100))
        .await
        .unwrap());
    assert!(h
        .store
        .reject_reply(&id, &device("dev-2"), &malformed(1_200))
        .await
        .unwrap());

    let record = h.store.invocation(&id).await.unwrap().unwrap();
    assert_eq!(record.status, "PENDING", "a rejected reply changes nothing");
    let reasons: Vec<String> = record
        .timeline
        .unwrap()
        .iter()
        .filter_map(|e| e.status_reason.as_ref().map(|r| r.reason_code.clone()))
        .collect();
    assert_eq!(reasons, ["INVALID_REPLY", "WRONG_DEVICE"]);
}

#[tokio::test]
async fn connectivity_expires_like_the_records() {
    let h = harness().await;
    let store = h
        .store
        .clone()
        .with_retention(std::time::Duration::from_secs(86_400));
    store
        .record_presence(&PresenceEvent {
            device: device("dev-ttl"),
            presence: Presence::Disconnected,
            at_ms: 1_795_456_800_000,
            session: None,
            disconnect_reason: Some("CLIENT_INITIATED_DISCONNECT".into()),
        })
        .await
        .unwrap();

    let item = store
        .client()
        .get_item()
        .table_name(store.table())
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("DEVICE#dev-ttl".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("CONNECTIVITY".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(
        item["expiresAt"],
        aws_sdk_dynamodb::types::AttributeValue::N((1_795_456_800 + 86_400).to_string())
    );
}

#[tokio::test]
async fn execution_records_come_back_in_order_without_their_timelines() {
    let h = harness().await;
    let (a, b, missing) = (
        ExecutionId::random(),
        ExecutionId::random(),
        ExecutionId::random(),
    );
    for (id, status) in [
        (&a, ExecutionStatus::Succeeded),
        (&b, ExecutionStatus::InProgress),
    ] {
        h.store
            .apply(
                &RecordKey::Execution(id.clone()),
                &StatusChange::new(status, Source::Device, 2_000),
                Some(&execution_meta("unlock", "car-1")),
            )
            .await
            .unwrap();
    }

    let records = h
        .store
        .execution_records(&[b.clone(), missing, a.clone()])
        .await
        .unwrap();

    let summary: Vec<Option<(String, String)>> = records
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|r| (r.execution_id.clone(), r.status.to_string()))
        })
        .collect();
    assert_eq!(
        summary,
        [
            Some((b.to_string(), "IN_PROGRESS".to_owned())),
            None,
            Some((a.to_string(), "SUCCEEDED".to_owned())),
        ]
    );
    assert!(records.iter().flatten().all(|r| r.timeline.is_none()));
}

/// The local endpoint holds the store to DynamoDB's rules: three requests DynamoDB refuses
/// with a ValidationException (and moto accepted) are refused here too, so a request bug shows
/// up in `make test` and not first in an account.
#[tokio::test]
async fn the_local_endpoint_refuses_what_dynamodb_refuses() {
    use aws_sdk_dynamodb::types::{AttributeValue as Av, PutRequest, WriteRequest};
    let h = harness().await;
    let (client, table) = (h.store.client(), h.store.table());
    let is_validation = |code: Option<&str>| code == Some("ValidationException");

    let unused_value = client
        .put_item()
        .table_name(table)
        .item("pk", Av::S("strict-1".into()))
        .item("sk", Av::S("RECORD".into()))
        .condition_expression("attribute_not_exists(pk)")
        .expression_attribute_values(":unused", Av::S("x".into()))
        .send()
        .await;
    let wrong_index_type = client
        .put_item()
        .table_name(table)
        .item("pk", Av::S("strict-2".into()))
        .item("sk", Av::S("RECORD".into()))
        .item("gsi1pk", Av::N("42".into()))
        .send()
        .await;
    let requests: Vec<WriteRequest> = (0..26)
        .map(|i| {
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .item("pk", Av::S(format!("strict-batch-{i}")))
                        .item("sk", Av::S("RECORD".into()))
                        .build()
                        .unwrap(),
                )
                .build()
        })
        .collect();
    let batch_of_26 = client
        .batch_write_item()
        .request_items(table, requests)
        .send()
        .await;

    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    let code = |e: &dyn ProvideErrorMetadata| e.code().map(str::to_owned);
    let codes = [
        unused_value.err().and_then(|e| code(&e)),
        wrong_index_type.err().and_then(|e| code(&e)),
        batch_of_26.err().and_then(|e| code(&e)),
    ];
    assert!(
        codes.iter().all(|c| is_validation(c.as_deref())),
        "each is a ValidationException: {codes:?}"
    );
}

/// A history longer than one answer carries is cut (its oldest entries kept, and said so), and
/// the record is still found: a device that floods its own invocation with bad replies cannot
/// make a GET outgrow Lambda's 6 MB answer, nor hide the record.
#[tokio::test]
async fn a_flooded_timeline_is_cut_and_says_so() {
    let h = harness().await;
    let id = open_invocation(&h.store).await;
    // About 1.1 KB an entry: 2,100 of them are more than two 1 MB pages.
    let description = "x".repeat(1000);
    for n in 0..2_100 {
        let change = StatusChange::rejected_reply(
            2_000 + n,
            StatusReason::new(tether_store::INVALID_REPLY, Some(description.clone())),
        );
        assert!(h
            .store
            .reject_reply(&id, &device("dev-1"), &change)
            .await
            .unwrap());
    }

    let record = h
        .store
        .invocation(&id)
        .await
        .unwrap()
        .expect("the record is found");

    assert_eq!(record.status, "PENDING");
    assert!(record.timeline_truncated);
    let timeline = record.timeline.unwrap();
    assert!(
        timeline.len() > 100 && timeline.len() < 2_101,
        "{}",
        timeline.len()
    );
    assert_eq!(timeline[0].status, "PENDING", "the oldest entries are kept");
    let answer = serde_json::to_vec(&h.store.invocation(&id).await.unwrap()).unwrap();
    assert!(answer.len() < 6 * 1024 * 1024, "{} bytes", answer.len());
}
