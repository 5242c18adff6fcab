//! The table's definition. `template.yaml` is its one source: the local stack and the tests read
//! the `Table` resource from it and create the same table on the local endpoint, and
//! [`TableSchema::check_fits_code`] fails when the template and the attribute and index names
//! this crate uses drift apart.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use serde::Deserialize;

use crate::error::StoreError;

/// Partition and sort key of every item.
pub const PK: &str = "pk";
pub const SK: &str = "sk";
/// "Per device, newest first".
pub const BY_DEVICE: &str = "ByDevice";
pub const BY_DEVICE_PK: &str = "gsi1pk";
pub const BY_DEVICE_SK: &str = "gsi1sk";
/// "Per command, newest first".
pub const BY_COMMAND: &str = "ByCommand";
pub const BY_COMMAND_PK: &str = "gsi2pk";
pub const BY_COMMAND_SK: &str = "gsi2sk";
/// Epoch seconds after which DynamoDB may delete the item.
pub const TTL_ATTRIBUTE: &str = "expiresAt";
/// The logical id of the table in `template.yaml`.
pub const TEMPLATE_LOGICAL_ID: &str = "Table";

/// The names of the items' other attributes, in one place. The key, index and TTL attributes
/// are the constants above, which the template must define; these are free-form and the
/// template does not name them.
pub(crate) mod attr {
    /// `execution`, `invocation` or `event`.
    pub(crate) const KIND: &str = "kind";
    /// The record's execution or request id.
    pub(crate) const ID: &str = "id";
    pub(crate) const STATUS: &str = "status";
    /// Who reported the status (`cloud` or `device`).
    pub(crate) const SOURCE: &str = "source";
    /// The map of `reasonCode` and `reasonDescription` that explains a status.
    pub(crate) const STATUS_REASON: &str = "statusReason";
    pub(crate) const REASON_CODE: &str = "reasonCode";
    pub(crate) const REASON_DESCRIPTION: &str = "reasonDescription";
    /// The record's status [`Precedence`](tether_domain::status::Precedence), compared by the
    /// conditional writes.
    pub(crate) const PRECEDENCE: &str = "precedence";
    /// The device's result, JSON as text.
    pub(crate) const RESULT: &str = "result";
    /// Epoch milliseconds.
    pub(crate) const CREATED_AT: &str = "createdAt";
    pub(crate) const UPDATED_AT: &str = "updatedAt";
    pub(crate) const COMPLETED_AT: &str = "completedAt";

    /// Execution records.
    pub(crate) const COMMAND_ID: &str = "commandId";
    pub(crate) const TARGET: &str = "target";
    pub(crate) const TARGET_KIND: &str = "targetKind";
    /// The command's parameters, JSON as text.
    pub(crate) const PARAMETERS: &str = "parameters";

    /// Invocation records (and the connectivity item: its device).
    pub(crate) const DEVICE_ID: &str = "deviceId";
    pub(crate) const METHOD: &str = "method";
    /// The fingerprint of the request that created the invocation.
    pub(crate) const REQUEST_HASH: &str = "requestHash";
    /// The caller's deadline, epoch milliseconds.
    pub(crate) const DEADLINE_AT: &str = "deadlineAt";

    /// Timeline entries: when the status was reported, epoch milliseconds.
    pub(crate) const AT: &str = "at";

    /// The connectivity item.
    pub(crate) const PRESENCE_ORDER: &str = "presenceOrder";
    pub(crate) const CONNECTED: &str = "connected";
    pub(crate) const SINCE: &str = "since";
    pub(crate) const DISCONNECT_REASON: &str = "disconnectReason";
}

/// The parts of an `AWS::DynamoDB::Table` that shape data access.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableSchema {
    pub attribute_definitions: Vec<AttributeDef>,
    pub key_schema: Vec<KeyDef>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexDef>,
    #[serde(default)]
    pub time_to_live_specification: Option<TtlDef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDef {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyDef {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexDef {
    pub index_name: String,
    pub key_schema: Vec<KeyDef>,
    pub projection: ProjectionDef,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectionDef {
    pub projection_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TtlDef {
    pub attribute_name: String,
    pub enabled: bool,
}

fn schema_error(message: impl Into<String>) -> StoreError {
    StoreError::Schema(message.into())
}

impl TableSchema {
    /// Reads the `Table` resource's properties from the text of a SAM/CloudFormation template.
    pub fn from_template(template: &str) -> Result<Self, StoreError> {
        let doc: serde_norway::Value = serde_norway::from_str(template)
            .map_err(|e| schema_error(format!("template is not YAML: {e}")))?;
        let properties = doc
            .get("Resources")
            .and_then(|r| r.get(TEMPLATE_LOGICAL_ID))
            .and_then(|t| t.get("Properties"))
            .ok_or_else(|| {
                schema_error(format!(
                    "template has no Resources.{TEMPLATE_LOGICAL_ID}.Properties"
                ))
            })?;
        serde_norway::from_value(properties.clone())
            .map_err(|e| schema_error(format!("Resources.{TEMPLATE_LOGICAL_ID}.Properties: {e}")))
    }

    fn keys(keys: &[KeyDef]) -> Vec<(&str, &str)> {
        keys.iter()
            .map(|k| (k.attribute_name.as_str(), k.key_type.as_str()))
            .collect()
    }

    /// Fails when the template does not define the keys, indexes and TTL this crate uses.
    pub fn check_fits_code(&self) -> Result<(), StoreError> {
        let expect = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(schema_error(format!(
                    "template drifted from the store code: {what}"
                )))
            }
        };
        expect(
            Self::keys(&self.key_schema) == [(PK, "HASH"), (SK, "RANGE")],
            "table keys must be pk (HASH), sk (RANGE)",
        )?;
        for (name, pk, sk) in [
            (BY_DEVICE, BY_DEVICE_PK, BY_DEVICE_SK),
            (BY_COMMAND, BY_COMMAND_PK, BY_COMMAND_SK),
        ] {
            let index = self
                .global_secondary_indexes
                .iter()
                .find(|i| i.index_name == name);
            expect(
                index.is_some_and(|i| {
                    Self::keys(&i.key_schema) == [(pk, "HASH"), (sk, "RANGE")]
                        && i.projection.projection_type == "ALL"
                }),
                &format!("index {name} must be keyed {pk} (HASH), {sk} (RANGE) and project ALL"),
            )?;
        }
        for attribute in [
            PK,
            SK,
            BY_DEVICE_PK,
            BY_DEVICE_SK,
            BY_COMMAND_PK,
            BY_COMMAND_SK,
        ] {
            expect(
                self.attribute_definitions
                    .iter()
                    .any(|a| a.attribute_name == attribute && a.attribute_type == "S"),
                &format!("attribute {attribute} must be defined as S"),
            )?;
        }
        expect(
            self.time_to_live_specification
                .as_ref()
                .is_some_and(|t| t.enabled && t.attribute_name == TTL_ATTRIBUTE),
            &format!("TTL must be enabled on {TTL_ATTRIBUTE}"),
        )
    }

    /// Creates the table on an endpoint (the local one) with this definition, on-demand billing,
    /// and TTL switched on.
    pub async fn create_table(&self, client: &Client, table: &str) -> Result<(), StoreError> {
        let key = |k: &KeyDef| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(|e| schema_error(e.to_string()))
        };
        let mut request = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest);
        for a in &self.attribute_definitions {
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&a.attribute_name)
                    .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                    .build()
                    .map_err(|e| schema_error(e.to_string()))?,
            );
        }
        for k in &self.key_schema {
            request = request.key_schema(key(k)?);
        }
        for index in &self.global_secondary_indexes {
            let mut gsi = GlobalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            index.projection.projection_type.as_str(),
                        ))
                        .build(),
                );
            for k in &index.key_schema {
                gsi = gsi.key_schema(key(k)?);
            }
            request = request
                .global_secondary_indexes(gsi.build().map_err(|e| schema_error(e.to_string()))?);
        }
        request
            .send()
            .await
            .map_err(|e| StoreError::dynamo("CreateTable", e))?;

        if let Some(ttl) = &self.time_to_live_specification {
            client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(&ttl.attribute_name)
                        .enabled(ttl.enabled)
                        .build()
                        .map_err(|e| schema_error(e.to_string()))?,
                )
                .send()
                .await
                .map_err(|e| StoreError::dynamo("UpdateTimeToLive", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../../../template.yaml");

    #[test]
    fn template_table_fits_the_store_code() {
        let schema = TableSchema::from_template(TEMPLATE).expect("template.yaml has a Table");
        schema
            .check_fits_code()
            .expect("template.yaml and the store agree");
    }

    #[test]
    fn drift_is_reported() {
        let drifted = TEMPLATE.replace("IndexName: ByCommand", "IndexName: PerCommand");
        let schema = TableSchema::from_template(&drifted).unwrap();
        let err = schema.check_fits_code().unwrap_err();
        assert!(err.to_string().contains("ByCommand"), "{err}");
    }
}
