//! Property: any arrival order of a valid execution event sequence, with duplicates, written
//! through the store into the local DynamoDB endpoint, ends in the same record and timeline as
//! in-order delivery.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use tether_domain::status::NO_RESPONSE_FROM_DEVICE;
use tether_domain::topics::TargetKind;
use tether_domain::{CommandId, DeviceId, ExecutionId, ExecutionStatus, Source, StatusReason};
use tether_store::{RecordKey, RecordMeta, StatusChange, Store};
use tether_testkit::LocalDynamo;

/// A change, and whether it comes from the start call (which carries the parameters).
type Arrival = (StatusChange, bool);

/// A sequence the status machine accepts in order: CREATED (from the start call, with
/// parameters), IN_PROGRESS reports, maybe a cloud timeout, maybe a final device report.
fn valid_sequence() -> impl Strategy<Value = Vec<Arrival>> {
    (
        0usize..4,
        any::<bool>(),
        prop::option::of(0usize..4),
        1i64..5_000,
    )
        .prop_map(|(progress, timeout, last, step)| {
            let mut at = 1_700_000_000_000;
            let mut next = || {
                at += step;
                at
            };
            // (change, comes from the start call)
            let mut events = vec![(
                StatusChange::new(ExecutionStatus::Created, Source::Cloud, next()),
                true,
            )];
            for i in 0..progress {
                let reason =
                    StatusReason::new(format!("STEP_{i}"), Some(format!("{}%", (i + 1) * 20)));
                events.push((
                    StatusChange::new(ExecutionStatus::InProgress, Source::Device, next())
                        .with_reason(Some(reason)),
                    false,
                ));
            }
            if timeout {
                let reason = StatusReason::new(NO_RESPONSE_FROM_DEVICE, None);
                events.push((
                    StatusChange::new(ExecutionStatus::TimedOut, Source::Cloud, next())
                        .with_reason(Some(reason)),
                    false,
                ));
            }
            if let Some(i) = last {
                let status = [
                    ExecutionStatus::Succeeded,
                    ExecutionStatus::Failed,
                    ExecutionStatus::Rejected,
                    ExecutionStatus::TimedOut,
                ][i];
                let reason = (status != ExecutionStatus::Succeeded)
                    .then(|| StatusReason::new("DEVICE_SAID_SO", None));
                events.push((
                    StatusChange::new(status, Source::Device, next()).with_reason(reason),
                    false,
                ));
            }
            events
        })
}

fn arrivals() -> impl Strategy<Value = (Vec<Arrival>, Vec<Arrival>)> {
    (
        valid_sequence(),
        prop::collection::vec(any::<Index>(), 0..4),
    )
        .prop_flat_map(|(events, dups)| {
            let mut arrived = events.clone();
            arrived.extend(dups.iter().map(|d| events[d.index(events.len())].clone()));
            (Just(events), Just(arrived).prop_shuffle())
        })
}

async fn deliver(store: &Store, id: &ExecutionId, events: &[Arrival]) {
    for (change, from_start) in events {
        let meta = RecordMeta::Execution {
            command: CommandId::parse("unlock").unwrap(),
            target: DeviceId::parse("car-1").unwrap(),
            target_kind: TargetKind::Thing,
            parameters: from_start.then(|| json!({"door": {"S": "front"}})),
        };
        store
            .apply(&RecordKey::Execution(id.clone()), change, Some(&meta))
            .await
            .unwrap();
    }
}

#[test]
fn any_arrival_order_with_duplicates_ends_like_in_order_delivery() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = LocalDynamo::shared();
    let store = runtime.block_on(server.fresh_store());
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        ..Config::default()
    });

    let result = runner.run(&arrivals(), |(in_order, arrived)| {
        let (expected, actual) = runtime.block_on(async {
            let (a, b) = (ExecutionId::random(), ExecutionId::random());
            deliver(&store, &a, &in_order).await;
            deliver(&store, &b, &arrived).await;
            (
                store.execution(&a).await.unwrap().unwrap(),
                store.execution(&b).await.unwrap().unwrap(),
            )
        });
        let mut actual = actual;
        actual.execution_id = expected.execution_id.clone();
        prop_assert_eq!(actual, expected);
        Ok(())
    });

    if let Err(failure) = result {
        panic!("{failure}");
    }
}
