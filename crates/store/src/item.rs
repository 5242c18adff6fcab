//! Reading and writing DynamoDB attribute values.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use tether_domain::StatusReason;

use crate::error::StoreError;
use crate::schema::{attr, PK, SK};

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

pub(crate) fn n(number: i64) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

pub(crate) fn reason_value(reason: &StatusReason) -> AttributeValue {
    let mut map = HashMap::from([(attr::REASON_CODE.to_owned(), s(&reason.reason_code))]);
    if let Some(text) = &reason.reason_description {
        map.insert(attr::REASON_DESCRIPTION.to_owned(), s(text));
    }
    AttributeValue::M(map)
}

/// Typed access to one stored item, with errors that name the item and attribute.
pub(crate) struct Reader<'a> {
    item: &'a Item,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(item: &'a Item) -> Self {
        Self { item }
    }

    fn corrupt(&self, problem: String) -> StoreError {
        let key = match (self.item.get(PK), self.item.get(SK)) {
            (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => format!("{pk}/{sk}"),
            _ => "(no key)".to_owned(),
        };
        StoreError::Corrupt { key, problem }
    }

    pub(crate) fn opt_s(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(text)) => Ok(Some(text)),
            Some(_) => Err(self.corrupt(format!("{name} is not a string"))),
        }
    }

    pub(crate) fn s(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_s(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }

    /// A string attribute that must be one of a known set (a status), read by `parse`.
    pub(crate) fn parsed<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, StoreError> {
        let text = self.s(name)?;
        parse(text)
            .ok_or_else(|| self.corrupt(format!("{name} {text:?} is not one this code writes")))
    }

    pub(crate) fn opt_n(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(text)) => text
                .parse()
                .map(Some)
                .map_err(|_| self.corrupt(format!("{name} is not an integer"))),
            Some(_) => Err(self.corrupt(format!("{name} is not a number"))),
        }
    }

    pub(crate) fn n(&self, name: &str) -> Result<i64, StoreError> {
        self.opt_n(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }

    pub(crate) fn opt_bool(&self, name: &str) -> Result<Option<bool>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.corrupt(format!("{name} is not a boolean"))),
        }
    }

    /// A JSON document stored as text.
    pub(crate) fn opt_json(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.opt_s(name)?
            .map(|text| {
                serde_json::from_str(text).map_err(|_| self.corrupt(format!("{name} is not JSON")))
            })
            .transpose()
    }

    pub(crate) fn opt_reason(&self, name: &str) -> Result<Option<StatusReason>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::M(map)) => {
                let inner = Reader::new(map);
                Ok(Some(StatusReason::new(
                    inner.s(attr::REASON_CODE).map_err(|_| {
                        self.corrupt(format!("{name}.{} is missing", attr::REASON_CODE))
                    })?,
                    inner.opt_s(attr::REASON_DESCRIPTION)?.map(str::to_owned),
                )))
            }
            Some(_) => Err(self.corrupt(format!("{name} is not a map"))),
        }
    }
}
