//! Opaque pagination tokens: the last key of a query, as base64url JSON.
//!
//! A token is a map of key attribute names to text. Whoever lists says what the token must be
//! ([`Shape`]): exactly these attribute names, some with a fixed value (the partition being
//! listed), some with a prefix, the others non-empty. A token that does not fit is refused, so a
//! caller cannot turn it into a read of another partition; the store maps the refusal to a 400.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Longest token accepted, in characters; real ones are far shorter.
pub const MAX_TOKEN_LEN: usize = 2048;

/// What one attribute of a valid token must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect<'a> {
    /// Exactly this text.
    Equals(&'a str),
    /// Text starting with this prefix.
    Prefix(&'a str),
    /// Any text but the empty one.
    NonEmpty,
}

impl Expect<'_> {
    fn holds(self, value: &str) -> bool {
        match self {
            Expect::Equals(expected) => value == expected,
            Expect::Prefix(prefix) => value.starts_with(prefix),
            Expect::NonEmpty => !value.is_empty(),
        }
    }
}

/// The attributes a valid token has: each name once, with what its value must be.
pub type Shape<'a> = [(&'a str, Expect<'a>)];

/// The token is not one this list handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidToken;

/// Encodes a key (attribute name → text) as a token.
pub fn encode(key: &BTreeMap<String, String>) -> String {
    // A map of strings always serialises.
    let json = serde_json::to_vec(key).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a token into its key, if it has exactly the attributes of `shape` and each holds
/// what `shape` says.
pub fn decode(token: &str, shape: &Shape<'_>) -> Result<BTreeMap<String, String>, InvalidToken> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(InvalidToken);
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| InvalidToken)?;
    let key: BTreeMap<String, String> = serde_json::from_slice(&bytes).map_err(|_| InvalidToken)?;
    fits(&key, shape).then_some(key).ok_or(InvalidToken)
}

/// Whether `key` has exactly the attributes of `shape`, each holding what `shape` says.
pub fn fits(key: &BTreeMap<String, String>, shape: &Shape<'_>) -> bool {
    key.len() == shape.len()
        && shape.iter().all(|(name, expect)| {
            key.get(*name)
                .is_some_and(|value| expect.holds(value.as_str()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: &Shape<'static> = &[
        ("pk", Expect::Prefix("EXEC#")),
        ("sk", Expect::Equals("RECORD")),
        ("gsi1pk", Expect::Equals("DEVICE#a#EXEC")),
        ("gsi1sk", Expect::NonEmpty),
    ];

    fn key(partition: &str) -> BTreeMap<String, String> {
        [
            ("pk", "EXEC#e1"),
            ("sk", "RECORD"),
            ("gsi1pk", partition),
            ("gsi1sk", "000000000001000#e1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    proptest::proptest! {
        /// Any text, and any re-encoded map, decodes only into a key that fits the shape.
        #[test]
        fn a_forged_token_never_decodes_into_another_partition(
            text in ".{0,300}",
            fields in proptest::collection::btree_map("(pk|sk|gsi1pk|gsi1sk|[a-z]{1,4})", ".{0,20}", 0..6),
        ) {
            for token in [text.clone(), encode(&fields)] {
                if let Ok(key) = decode(&token, SHAPE) {
                    proptest::prop_assert!(fits(&key, SHAPE));
                    proptest::prop_assert_eq!(key.get("gsi1pk").map(String::as_str), Some("DEVICE#a#EXEC"));
                }
            }
        }
    }

    #[test]
    fn a_token_round_trips_for_its_own_partition() {
        let token = encode(&key("DEVICE#a#EXEC"));
        assert_eq!(decode(&token, SHAPE), Ok(key("DEVICE#a#EXEC")));
    }

    #[test]
    fn garbage_reshaped_and_foreign_tokens_are_refused() {
        let mut extra = key("DEVICE#a#EXEC");
        extra.insert("status".into(), "x".into());
        let mut wrong_sk = key("DEVICE#a#EXEC");
        wrong_sk.insert("sk".into(), "EVENT#1".into());
        let mut missing = key("DEVICE#a#EXEC");
        missing.remove("gsi1sk");
        for token in [
            String::new(),
            "!!!".to_owned(),
            "x".repeat(3000),
            URL_SAFE_NO_PAD.encode(b"[1,2]"),
            URL_SAFE_NO_PAD.encode(b"{\"pk\":1}"),
            encode(&key("DEVICE#b#EXEC")),
            encode(&extra),
            encode(&wrong_sk),
            encode(&missing),
        ] {
            assert_eq!(decode(&token, SHAPE), Err(InvalidToken), "{token:?}");
        }
    }
}
