//! Every id of a path, topic or record (device, method, command, execution, request) and the
//! Idempotency-Key. An accepted id is exactly its input, of the allowed characters only: none
//! can carry a topic separator, a wildcard or anything a path would treat specially.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_domain::ids::is_idempotency_key;
use tether_domain::{CommandId, DeviceId, ExecutionId, MethodName, RequestId};

fn check(text: &str, parsed: Option<&str>, extra: &[u8], max: usize) {
    if let Some(id) = parsed {
        assert_eq!(id, text);
        assert!((1..=max).contains(&id.len()));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b)));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(
        text,
        DeviceId::parse(text).ok().as_ref().map(|i| i.as_str()),
        b":_-",
        128,
    );
    check(
        text,
        MethodName::parse(text).ok().as_ref().map(|i| i.as_str()),
        b"_-",
        64,
    );
    check(
        text,
        CommandId::parse(text).ok().as_ref().map(|i| i.as_str()),
        b"_-",
        64,
    );
    check(
        text,
        ExecutionId::parse(text).ok().as_ref().map(|i| i.as_str()),
        b"_-",
        64,
    );
    check(
        text,
        RequestId::parse(text).ok().as_ref().map(|i| i.as_str()),
        b"_-",
        64,
    );
    if is_idempotency_key(text) {
        assert!(text.bytes().all(|b| (0x21..=0x7e).contains(&b)) && text.len() <= 128);
    }
});
