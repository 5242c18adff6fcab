//! Lists: a page of items with the token of the next one, and the list routes' query.

use serde::{Deserialize, Serialize};

use super::{invalid, DEFAULT_LIST_LIMIT, LIST_LIMIT};
use crate::error::ApiError;

/// A page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Query of the list routes: `status`, `limit`, `nextToken`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListQuery {
    pub status: Option<crate::status::ExecutionStatus>,
    pub limit: u32,
    pub next_token: Option<String>,
}

impl ListQuery {
    /// Reads the query-string pairs of a list route; unknown keys are refused.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ApiError> {
        let mut query = ListQuery {
            limit: DEFAULT_LIST_LIMIT,
            ..Default::default()
        };
        for (key, value) in pairs {
            match key {
                "status" => {
                    query.status =
                        Some(crate::status::ExecutionStatus::parse(value).ok_or_else(|| {
                            invalid(format!("status {value:?} is not an execution status"))
                        })?)
                }
                "limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|l| LIST_LIMIT.contains(l))
                        .ok_or_else(|| {
                            invalid(format!(
                                "limit must be between {} and {}",
                                LIST_LIMIT.start(),
                                LIST_LIMIT.end()
                            ))
                        })?
                }
                "nextToken" => query.next_token = Some(value.to_owned()),
                other => return Err(invalid(format!("unknown query parameter {other:?}"))),
            }
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_reads_and_refuses() {
        let q = ListQuery::from_pairs([("status", "SUCCEEDED"), ("limit", "5")]).unwrap();
        assert_eq!(q.limit, 5);
        assert!(ListQuery::from_pairs([("limit", "0")]).is_err());
        assert!(ListQuery::from_pairs([("limit", "101")]).is_err());
        assert!(ListQuery::from_pairs([("status", "DONE")]).is_err());
        assert!(ListQuery::from_pairs([("sort", "asc")]).is_err());
        assert_eq!(ListQuery::from_pairs([]).unwrap().limit, DEFAULT_LIST_LIMIT);
    }
}
