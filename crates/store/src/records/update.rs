//! The record's conditional update: a status change reaches the record only when it wins (see
//! the module's doc), creates the record when it comes with what the record is about, and with
//! a device guard only changes a record of that device.

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use serde_json::Value;
use tether_domain::status::Precedence;
use tether_domain::topics::TargetKind;
use tether_domain::{CommandId, DeviceId, MethodName};

use super::{RecordKey, RecordMeta, StatusChange, Store};
use crate::error::{is_condition_failure, StoreError};
use crate::item::{n, reason_value, s};
use crate::keys::{command_partition, device_partition, index_sort_key, RECORD_SK};
use crate::schema::{
    attr, BY_COMMAND_PK, BY_COMMAND_SK, BY_DEVICE_PK, BY_DEVICE_SK, PK, SK, TTL_ATTRIBUTE,
};

/// What a conditional record update did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Written {
    Applied,
    /// The condition failed. With a device guard, `found` says whether the record exists and
    /// `owner` is its device (`None`: no record, or no device on it).
    Refused {
        found: bool,
        owner: Option<String>,
        /// The record's precedence (with a device guard): which change it holds.
        precedence: Option<String>,
    },
}

impl Store {
    /// Writes `change` to the record of `key` (partition `pk`) if it wins. With `meta` the
    /// record is created when missing; without it the record must exist. With `device_guard`
    /// the record must belong to that device.
    pub(super) async fn update_record(
        &self,
        key: &RecordKey,
        pk: &str,
        change: &StatusChange,
        meta: Option<&RecordMeta>,
        device_guard: Option<&DeviceId>,
    ) -> Result<Written, StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(RECORD_SK));
        let update = RecordUpdate::new(request).status(key, change, self.expires_at(change.at_ms));
        let created_sort = index_sort_key(change.at_ms, key.id());
        let update = match meta {
            Some(RecordMeta::Execution {
                command,
                target,
                target_kind,
                parameters,
            }) => update.execution(
                key,
                &created_sort,
                command,
                target,
                target_kind,
                parameters.as_ref(),
            ),
            Some(RecordMeta::Invocation { device, method }) => {
                update.invocation(key, &created_sort, device, method)
            }
            None => update,
        };
        update.condition(meta.is_some(), device_guard).send().await
    }
}

/// An UpdateItem of a record, built up in steps: each adds its SET or REMOVE clauses and binds
/// their `#name` and `:value` placeholders.
struct RecordUpdate {
    request: UpdateItemFluentBuilder,
    sets: Vec<&'static str>,
    removes: Vec<&'static str>,
    condition: String,
}

impl RecordUpdate {
    fn new(request: UpdateItemFluentBuilder) -> Self {
        Self {
            request,
            sets: Vec::new(),
            removes: Vec::new(),
            condition: String::new(),
        }
    }

    /// The change itself: status, source, precedence and times, its reason (or none), its
    /// result and, for a terminal change, the completion time.
    fn status(
        mut self,
        key: &RecordKey,
        change: &StatusChange,
        expires_at: AttributeValue,
    ) -> Self {
        self.sets.extend([
            "#status = :status",
            "#source = :source",
            "#prec = :prec",
            "#updatedAt = :at",
            "#createdAt = if_not_exists(#createdAt, :at)",
            "#ttl = if_not_exists(#ttl, :ttl)",
            "#kind = :kind",
            "#id = :id",
        ]);
        self.request = self
            .request
            .expression_attribute_names("#status", attr::STATUS)
            .expression_attribute_names("#source", attr::SOURCE)
            .expression_attribute_names("#prec", attr::PRECEDENCE)
            .expression_attribute_names("#updatedAt", attr::UPDATED_AT)
            .expression_attribute_names("#createdAt", attr::CREATED_AT)
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_names("#kind", attr::KIND)
            .expression_attribute_names("#id", attr::ID)
            .expression_attribute_names("#reason", attr::STATUS_REASON)
            .expression_attribute_values(":status", s(change.status))
            .expression_attribute_values(":source", s(change.source.as_str()))
            .expression_attribute_values(":prec", s(change.precedence().as_str()))
            .expression_attribute_values(":floor", s(Precedence::terminal_floor().as_str()))
            .expression_attribute_values(":at", n(change.at_ms))
            .expression_attribute_values(":ttl", expires_at)
            .expression_attribute_values(":kind", s(key.kind()))
            .expression_attribute_values(":id", s(key.id()));
        match &change.reason {
            Some(reason) => {
                self.sets.push("#reason = :reason");
                self.request = self
                    .request
                    .expression_attribute_values(":reason", reason_value(reason));
            }
            None => self.removes.push("#reason"),
        }
        if let Some(result) = &change.result {
            self.sets.push("#result = :result");
            self.request = self
                .request
                .expression_attribute_names("#result", attr::RESULT)
                .expression_attribute_values(":result", s(result.to_string()));
        }
        if change.phase.is_terminal() {
            self.sets.push("#completedAt = :at");
            self.request = self
                .request
                .expression_attribute_names("#completedAt", attr::COMPLETED_AT);
        }
        self
    }

    /// What an execution record is about and its index keys, where the record has none yet.
    fn execution(
        mut self,
        key: &RecordKey,
        created_sort: &str,
        command: &CommandId,
        target: &DeviceId,
        target_kind: &TargetKind,
        parameters: Option<&Value>,
    ) -> Self {
        self.sets.extend([
            "#commandId = if_not_exists(#commandId, :commandId)",
            "#target = if_not_exists(#target, :target)",
            "#targetKind = if_not_exists(#targetKind, :targetKind)",
            "#g1pk = if_not_exists(#g1pk, :g1pk)",
            "#g1sk = if_not_exists(#g1sk, :gsk)",
            "#g2pk = if_not_exists(#g2pk, :g2pk)",
            "#g2sk = if_not_exists(#g2sk, :gsk)",
        ]);
        self.request = self
            .request
            .expression_attribute_names("#commandId", attr::COMMAND_ID)
            .expression_attribute_names("#target", attr::TARGET)
            .expression_attribute_names("#targetKind", attr::TARGET_KIND)
            .expression_attribute_names("#g1pk", BY_DEVICE_PK)
            .expression_attribute_names("#g1sk", BY_DEVICE_SK)
            .expression_attribute_names("#g2pk", BY_COMMAND_PK)
            .expression_attribute_names("#g2sk", BY_COMMAND_SK)
            .expression_attribute_values(":commandId", s(command.as_str()))
            .expression_attribute_values(":target", s(target.as_str()))
            .expression_attribute_values(":targetKind", s(target_kind.arn_type()))
            .expression_attribute_values(":g1pk", s(device_partition(target, key)))
            .expression_attribute_values(":g2pk", s(command_partition(command)))
            .expression_attribute_values(":gsk", s(created_sort));
        if let Some(parameters) = parameters {
            self.sets
                .push("#parameters = if_not_exists(#parameters, :parameters)");
            self.request = self
                .request
                .expression_attribute_names("#parameters", attr::PARAMETERS)
                .expression_attribute_values(":parameters", s(parameters.to_string()));
        }
        self
    }

    /// What an invocation record is about and its index keys, where the record has none yet.
    fn invocation(
        mut self,
        key: &RecordKey,
        created_sort: &str,
        device: &DeviceId,
        method: &MethodName,
    ) -> Self {
        self.sets.extend([
            "#deviceId = if_not_exists(#deviceId, :deviceId)",
            "#method = if_not_exists(#method, :method)",
            "#g1pk = if_not_exists(#g1pk, :g1pk)",
            "#g1sk = if_not_exists(#g1sk, :gsk)",
        ]);
        self.request = self
            .request
            .expression_attribute_names("#deviceId", attr::DEVICE_ID)
            .expression_attribute_names("#method", attr::METHOD)
            .expression_attribute_names("#g1pk", BY_DEVICE_PK)
            .expression_attribute_names("#g1sk", BY_DEVICE_SK)
            .expression_attribute_values(":deviceId", s(device.as_str()))
            .expression_attribute_values(":method", s(method.as_str()))
            .expression_attribute_values(":g1pk", s(device_partition(device, key)))
            .expression_attribute_values(":gsk", s(created_sort));
        self
    }

    /// The change wins over the stored one, and the stored one is not terminal; the record
    /// must exist unless the update `creates` it; with `device_guard`, it is that device's.
    fn condition(mut self, creates: bool, device_guard: Option<&DeviceId>) -> Self {
        let wins = "(attribute_not_exists(#prec) OR (#prec < :prec AND #prec < :floor))";
        self.condition = if creates {
            wins.to_owned()
        } else {
            self.request = self.request.expression_attribute_names("#pk", PK);
            format!("attribute_exists(#pk) AND {wins}")
        };
        if let Some(device) = device_guard {
            self.condition.push_str(" AND #guardDevice = :guardDevice");
            self.request = self
                .request
                .expression_attribute_names("#guardDevice", attr::DEVICE_ID)
                .expression_attribute_values(":guardDevice", s(device.as_str()))
                // To tell a reply from another device apart from one that lost the race.
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
        }
        self
    }

    async fn send(self) -> Result<Written, StoreError> {
        let mut expression = format!("SET {}", self.sets.join(", "));
        if !self.removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", self.removes.join(", ")));
        }
        match self
            .request
            .update_expression(expression)
            .condition_expression(self.condition)
            .send()
            .await
        {
            Ok(_) => Ok(Written::Applied),
            Err(err) if is_condition_failure(&err) => {
                let stored = match err.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                        failed.item().filter(|item| !item.is_empty())
                    }
                    _ => None,
                };
                let text = |name: &str| {
                    stored
                        .and_then(|item| item.get(name))
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                };
                Ok(Written::Refused {
                    found: stored.is_some(),
                    owner: text(attr::DEVICE_ID),
                    precedence: text(attr::PRECEDENCE),
                })
            }
            Err(err) => Err(StoreError::dynamo("UpdateItem", err)),
        }
    }
}
