//! What one round of a Commands `waitMs` wait reads from DynamoDB, for 100 targets: as it was
//! (a strongly consistent Query of each target's record and whole timeline) and as it is (one
//! strongly consistent BatchGetItem of the records alone). DynamoDB's own accounting
//! (`ReturnConsumedCapacity: TOTAL`), as the local endpoint computes it.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnConsumedCapacity};
use serde_json::json;
use tether_domain::topics::TargetKind;
use tether_domain::{CommandId, DeviceId, ExecutionId, ExecutionStatus, Source, StatusReason};
use tether_store::{RecordKey, RecordMeta, StatusChange, Store};

use crate::Env;

/// Read units and requests of one wait round.
pub struct Round {
    pub read_units: f64,
    pub requests: usize,
}

/// 100 executions of one command, each with `events` timeline entries (at least the CREATED,
/// IN_PROGRESS and SUCCEEDED of a normal run) and a small result.
async fn executions(env: &Env, events: usize) -> anyhow::Result<Vec<ExecutionId>> {
    let store = Store::new(env.dynamo.clone(), &env.table);
    let command = CommandId::parse("bench-wait")?;
    let mut ids = Vec::new();
    for n in 0..100 {
        let id = ExecutionId::random();
        let key = RecordKey::Execution(id.clone());
        let meta = RecordMeta::Execution {
            command: command.clone(),
            target: DeviceId::parse(format!("bench-{n}"))?,
            target_kind: TargetKind::Thing,
            parameters: None,
        };
        let at = 1_795_456_800_000 + n * 1000;
        store
            .apply(
                &key,
                &StatusChange::new(ExecutionStatus::Created, Source::Cloud, at),
                Some(&meta),
            )
            .await?;
        // Progress reports (a device that reports as it goes), then the final answer.
        for step in 0..events.saturating_sub(2) {
            let progress = StatusChange::new(
                ExecutionStatus::InProgress,
                Source::Device,
                at + 1 + step as i64,
            )
            .with_reason(Some(StatusReason::new(
                "PROGRESS",
                Some(format!("step {step} of the firmware download")),
            )));
            store.apply(&key, &progress, Some(&meta)).await?;
        }
        let done = StatusChange::new(ExecutionStatus::Succeeded, Source::Device, at + 900)
            .with_result(Some(
                json!({"version": {"S": "2.4.1"}, "rebooted": {"B": true}}),
            ));
        store.apply(&key, &done, Some(&meta)).await?;
        ids.push(id);
    }
    Ok(ids)
}

fn key(id: &ExecutionId) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(format!("EXEC#{id}"))),
        ("sk".to_owned(), AttributeValue::S("RECORD".to_owned())),
    ])
}

/// The old round: each target's record and timeline, every page.
async fn by_query(env: &Env, ids: &[ExecutionId]) -> anyhow::Result<Round> {
    let mut round = Round {
        read_units: 0.0,
        requests: 0,
    };
    for id in ids {
        let mut start = None;
        loop {
            let page = env
                .dynamo
                .query()
                .table_name(&env.table)
                .consistent_read(true)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(format!("EXEC#{id}")))
                .set_exclusive_start_key(start.take())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await?;
            round.requests += 1;
            round.read_units += page
                .consumed_capacity()
                .and_then(|c| c.capacity_units())
                .unwrap_or(f64::NAN);
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
    }
    Ok(round)
}

/// The round now: the records alone, 100 keys a request.
async fn by_batch(env: &Env, ids: &[ExecutionId]) -> anyhow::Result<Round> {
    let mut round = Round {
        read_units: 0.0,
        requests: 0,
    };
    for chunk in ids.chunks(100) {
        let keys = KeysAndAttributes::builder()
            .set_keys(Some(chunk.iter().map(key).collect()))
            .consistent_read(true)
            .build()?;
        let out = env
            .dynamo
            .batch_get_item()
            .request_items(&env.table, keys)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await?;
        round.requests += 1;
        round.read_units += out
            .consumed_capacity()
            .iter()
            .filter_map(|c| c.capacity_units())
            .sum::<f64>();
        anyhow::ensure!(
            out.unprocessed_keys().is_none_or(|u| u.is_empty()),
            "the batch left keys unprocessed"
        );
    }
    Ok(round)
}

/// (query, batch) rounds over 100 targets whose timelines hold `events` entries.
pub async fn rounds(env: &Env, events: usize) -> anyhow::Result<(Round, Round)> {
    let ids = executions(env, events).await?;
    Ok((by_query(env, &ids).await?, by_batch(env, &ids).await?))
}
