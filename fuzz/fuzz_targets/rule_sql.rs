//! local-iot's topic-rule SQL (read from template.yaml) and its evaluation on a message. No
//! panic on any statement or payload; a statement that parses evaluates to a JSON object or an
//! error, never to anything else.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_local_iot::rules::{evaluate, parse_sql};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The statement, then the topic and the payload of a message, one per line.
    let mut parts = text.splitn(3, '\n');
    let sql = parts.next().unwrap_or_default();
    let topic = parts.next().unwrap_or("tether/replies/dev-1/r1");
    let payload = parts.next().unwrap_or("{}");
    if let Ok((select, _filter)) = parse_sql("fuzz", sql) {
        if let Ok(value) = evaluate(&select, topic, payload.as_bytes(), 1_700_000_000_000) {
            assert!(value.is_object(), "{value}");
        }
    }
});
