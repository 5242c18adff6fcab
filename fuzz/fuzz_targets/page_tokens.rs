//! The lists' opaque `nextToken` (`tether_domain::page_token`, which the store uses for every
//! index query). No panic; a token decodes only into a key that fits the list's shape (its
//! partition, its kind of record); a key that fits, encoded, decodes back to itself; and a
//! decoded token, encoded again, is accepted again.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use tether_domain::page_token::{decode, encode, fits, Expect, Shape};

const SHAPE: &Shape<'static> = &[
    ("pk", Expect::Prefix("EXEC#")),
    ("sk", Expect::Equals("RECORD")),
    ("gsi1pk", Expect::Equals("DEVICE#dev-1#EXEC")),
    ("gsi1sk", Expect::NonEmpty),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = decode(text, SHAPE) {
        assert!(fits(&key, SHAPE));
        assert_eq!(key["gsi1pk"], "DEVICE#dev-1#EXEC");
        assert_eq!(decode(&encode(&key), SHAPE).as_ref(), Ok(&key));
    }
    // The input as a key: one `name=value` a line.
    let key: BTreeMap<String, String> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let token = encode(&key);
    match decode(&token, SHAPE) {
        Ok(back) => assert_eq!(back, key),
        Err(_) => {
            assert!(!fits(&key, SHAPE) || token.len() > tether_domain::page_token::MAX_TOKEN_LEN)
        }
    }
});
