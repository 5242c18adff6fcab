//! Opaque pagination tokens.
//!
//! A token is the last evaluated key of an index query, as base64url JSON. Decoding checks
//! that it has exactly the key attributes of that index and that its index partition is the
//! one being listed, so a token cannot be turned into a read of another device's or command's
//! partition; a token that fails any check is `InvalidToken` (a 400), never a DynamoDB error.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::StoreError;
use crate::keys::RECORD_SK;
use crate::schema::{PK, SK};

/// Longest token accepted, in characters; real ones are far shorter.
const MAX_TOKEN_LEN: usize = 2048;

/// Encodes a last evaluated key.
pub(crate) fn encode(key: &HashMap<String, AttributeValue>) -> Result<String, StoreError> {
    let mut plain = BTreeMap::new();
    for (name, value) in key {
        match value {
            AttributeValue::S(text) => {
                plain.insert(name.as_str(), text.as_str());
            }
            _ => {
                return Err(StoreError::Corrupt {
                    key: name.clone(),
                    problem: "key attribute is not a string".into(),
                })
            }
        }
    }
    let json = serde_json::to_vec(&plain).map_err(|e| StoreError::Corrupt {
        key: "nextToken".into(),
        problem: e.to_string(),
    })?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// Decodes a token for a query of `index_pk`/`index_sk` in partition `partition`.
pub(crate) fn decode(
    token: &str,
    index_pk: &str,
    index_sk: &str,
    partition: &str,
    record_prefix: &str,
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(StoreError::InvalidToken);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| StoreError::InvalidToken)?;
    let plain: BTreeMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidToken)?;
    let mut names: Vec<&str> = plain.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected = vec![PK, SK, index_pk, index_sk];
    expected.sort_unstable();
    let valid = names == expected
        && plain[index_pk] == partition
        && plain[PK].starts_with(record_prefix)
        && plain[SK] == RECORD_SK
        && !plain[index_sk].is_empty();
    if !valid {
        return Err(StoreError::InvalidToken);
    }
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

    proptest::proptest! {
        /// Fuzz: any text, and any re-encoded JSON map, is a valid token only if it names the
        /// listed partition; nothing panics.
        #[test]
        fn a_forged_token_never_decodes_into_another_partition(
            text in ".{0,300}",
            fields in proptest::collection::btree_map("(pk|sk|gsi1pk|gsi1sk|[a-z]{1,4})", ".{0,20}", 0..6),
        ) {
            for token in [text.clone(), URL_SAFE_NO_PAD.encode(serde_json::to_vec(&fields).unwrap())] {
                if let Ok(key) = decode(&token, "gsi1pk", "gsi1sk", "DEVICE#a#EXEC", "EXEC#") {
                    proptest::prop_assert_eq!(
                        key.get("gsi1pk"),
                        Some(&AttributeValue::S("DEVICE#a#EXEC".into()))
                    );
                }
            }
        }
    }

    #[test]
    fn a_token_round_trips_for_its_own_partition() {
        let token = encode(&key("DEVICE#a#EXEC")).unwrap();
        let back = decode(&token, "gsi1pk", "gsi1sk", "DEVICE#a#EXEC", "EXEC#").unwrap();
        assert_eq!(back, key("DEVICE#a#EXEC"));
    }

    #[test]
    fn a_token_for_another_partition_is_refused() {
        let token = encode(&key("DEVICE#a#EXEC")).unwrap();
        assert!(matches!(
            decode(&token, "gsi1pk", "gsi1sk", "DEVICE#b#EXEC", "EXEC#"),
            Err(StoreError::InvalidToken)
        ));
    }

    #[test]
    fn garbage_and_reshaped_tokens_are_refused() {
        let mut extra = key("DEVICE#a#EXEC");
        extra.insert("status".into(), AttributeValue::S("x".into()));
        let mut wrong_sk = key("DEVICE#a#EXEC");
        wrong_sk.insert("sk".into(), AttributeValue::S("EVENT#1".into()));
        for token in [
            String::new(),
            "!!!".to_owned(),
            "x".repeat(3000),
            URL_SAFE_NO_PAD.encode(b"[1,2]"),
            URL_SAFE_NO_PAD.encode(b"{\"pk\":1}"),
            encode(&extra).unwrap(),
            encode(&wrong_sk).unwrap(),
        ] {
            assert!(
                matches!(
                    decode(&token, "gsi1pk", "gsi1sk", "DEVICE#a#EXEC", "EXEC#"),
                    Err(StoreError::InvalidToken)
                ),
                "{token:?}"
            );
        }
    }
}
