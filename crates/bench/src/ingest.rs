//! Ingest throughput: rule events through the `ingest` handler (in this process, on the
//! release build) into the local DynamoDB endpoint, against a floor of raw conditional PutItem
//! calls from the same SDK at the same concurrency.

use std::time::Instant;

use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::Env;

/// Events per second and failures.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_second: f64,
    pub errors: usize,
}

/// A shuffled mix of presence and execution events with duplicates and out-of-order
/// timestamps, as rules deliver them. `seed` makes the mix repeatable.
pub fn events(count: usize, seed: u64) -> Vec<Value> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut events = Vec::with_capacity(count);
    let base = 1_795_456_700_000_i64;
    while events.len() < count {
        let n = events.len();
        let at = base + rng.i64(0..60_000);
        let event = if n % 2 == 0 {
            let device = format!("bench-{}-{}", &run[..8], rng.usize(0..50));
            let kind = if rng.bool() {
                "connected"
            } else {
                "disconnected"
            };
            json!({
                "clientId": device,
                "timestamp": at,
                "eventType": kind,
                "sessionIdentifier": format!("s-{}", rng.u32(0..4)),
                "topic": format!("$aws/events/presence/{kind}/{device}"),
            })
        } else {
            let execution = format!("{}-{:04}", &run[..8], rng.usize(0..100));
            let status = if rng.bool() { "CREATED" } else { "IN_PROGRESS" };
            json!({
                "executionId": execution,
                "status": status,
                "eventType": "COMMAND_EXECUTION",
                "commandArn": "arn:aws:iot:us-east-1:000000000000:command/bench",
                "targetArn": format!("arn:aws:iot:us-east-1:000000000000:thing/dev-{}", rng.usize(1..9)),
                "timestamp": at,
                "topic": format!("$aws/events/commandExecution/bench/{status}"),
            })
        };
        // About one event in five arrives twice.
        if rng.u8(0..5) == 0 && events.len() + 1 < count {
            events.push(event.clone());
        }
        events.push(event);
    }
    rng.shuffle(&mut events);
    events
}

/// The events through the handler, `concurrency` at a time.
pub async fn through_handler(env: &Env, events: Vec<Value>, concurrency: usize) -> Rate {
    let count = events.len();
    let started = Instant::now();
    let errors = stream::iter(events)
        .map(|event| async move { tether_ingest::handle(&env.ingest, event).await.is_err() })
        .buffer_unordered(concurrency)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    Rate {
        per_second: count as f64 / started.elapsed().as_secs_f64(),
        errors,
    }
}

/// The floor: `count` conditional PutItem calls, `concurrency` at a time.
pub async fn floor(env: &Env, count: usize, concurrency: usize) -> anyhow::Result<Rate> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let errors = stream::iter(0..count)
        .map(|i| {
            let pk = format!("FLOOR#{run}#{i}");
            async move {
                env.dynamo
                    .put_item()
                    .table_name(&env.table)
                    .item("pk", AttributeValue::S(pk))
                    .item("sk", AttributeValue::S("FLOOR".into()))
                    .item("at", AttributeValue::N(i.to_string()))
                    .condition_expression("attribute_not_exists(pk) OR #at < :at")
                    .expression_attribute_names("#at", "at")
                    .expression_attribute_values(":at", AttributeValue::N(i.to_string()))
                    .send()
                    .await
                    .is_err()
            }
        })
        .buffer_unordered(concurrency)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let rate = Rate {
        per_second: count as f64 / started.elapsed().as_secs_f64(),
        errors,
    };
    (errors < count)
        .then_some(rate)
        .context("every PutItem failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_the_asked_size_both_kinds_and_duplicates() {
        let events = events(400, 7);
        assert_eq!(events.len(), 400);
        let presence = events.iter().filter(|e| e["clientId"].is_string()).count();
        assert!(presence > 100 && presence < 300, "{presence}");
        let distinct: std::collections::BTreeSet<String> =
            events.iter().map(Value::to_string).collect();
        assert!(distinct.len() < events.len(), "some events arrive twice");
    }
}
