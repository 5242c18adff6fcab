//! Opaque pagination tokens of the store's index queries.
//!
//! A token is the last evaluated key of an index query ([`tether_domain::page_token`]).
//! Decoding checks that it has exactly the key attributes of that index, that its index
//! partition is the one being listed and that it points at a record of the listed kind, so a
//! token cannot be turned into a read of another device's or command's partition; a token that
//! fails any check is `InvalidToken` (a 400), never a DynamoDB error.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use tether_domain::page_token::{self, Expect};

use crate::error::StoreError;
use crate::keys::RECORD_SK;
use crate::schema::{PK, SK};

/// Encodes a last evaluated key.
pub(crate) fn encode(key: &HashMap<String, AttributeValue>) -> Result<String, StoreError> {
    let mut plain = BTreeMap::new();
    for (name, value) in key {
        let AttributeValue::S(text) = value else {
            return Err(StoreError::Corrupt {
                key: name.clone(),
                problem: "key attribute is not a string".into(),
            });
        };
        plain.insert(name.clone(), text.clone());
    }
    Ok(page_token::encode(&plain))
}

/// Decodes a token for a query of `index_pk`/`index_sk` in partition `partition`, whose
/// records' keys start with `record_prefix`.
pub(crate) fn decode(
    token: &str,
    index_pk: &str,
    index_sk: &str,
    partition: &str,
    record_prefix: &str,
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let shape = [
        (PK, Expect::Prefix(record_prefix)),
        (SK, Expect::Equals(RECORD_SK)),
        (index_pk, Expect::Equals(partition)),
        (index_sk, Expect::NonEmpty),
    ];
    let plain = page_token::decode(token, &shape).map_err(|_| StoreError::InvalidToken)?;
    Ok(plain
        .into_iter()
        .map(|(k, v)| (k, AttributeValue::S(v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(partition: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S("EXEC#e1".into())),
            ("sk".to_owned(), AttributeValue::S("RECORD".into())),
            ("gsi1pk".to_owned(), AttributeValue::S(partition.into())),
            (
                "gsi1sk".to_owned(),
                AttributeValue::S("000000000001000#e1".into()),
            ),
        ])
    }

    #[test]
    fn a_token_round_trips_for_its_own_partition() {
        let token = encode(&key("DEVICE#a#EXEC")).unwrap();
        let back = decode(&token, "gsi1pk", "gsi1sk", "DEVICE#a#EXEC", "EXEC#").unwrap();
        assert_eq!(back, key("DEVICE#a#EXEC"));
    }

    #[test]
    fn a_token_for_another_partition_or_kind_is_refused() {
        let token = encode(&key("DEVICE#a#EXEC")).unwrap();
        for (partition, prefix) in [("DEVICE#b#EXEC", "EXEC#"), ("DEVICE#a#EXEC", "INV#")] {
            assert!(matches!(
                decode(&token, "gsi1pk", "gsi1sk", partition, prefix),
                Err(StoreError::InvalidToken)
            ));
        }
    }

    #[test]
    fn a_key_that_is_not_text_is_not_encoded() {
        let mut key = key("DEVICE#a#EXEC");
        key.insert("gsi1sk".into(), AttributeValue::N("1".into()));
        assert!(matches!(encode(&key), Err(StoreError::Corrupt { .. })));
    }
}
