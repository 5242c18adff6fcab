//! The request bodies of every route that takes one, as the functions read them: parsed by
//! serde, then checked by the domain. Whatever the bytes, no panic; and what passes the checks
//! keeps passing them after a round trip through JSON, within the limits it was checked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_domain::api::{
    CreateCommandRequest, InvokeRequest, StartExecutionsRequest, UpdateCommandRequest,
    MAX_COMMAND_PAYLOAD, MAX_PAYLOAD_BYTES, MAX_TARGETS,
};

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    value: &T,
) {
    let text = serde_json::to_vec(value).expect("a parsed request serialises");
    let again: T = serde_json::from_slice(&text).expect("and parses again");
    assert_eq!(&again, value);
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    match route % 4 {
        0 => {
            if let Ok(request) = serde_json::from_slice::<InvokeRequest>(body) {
                round_trip(&request);
                if let Ok(invocation) = request.clone().validate() {
                    assert!(invocation.payload.len() <= MAX_PAYLOAD_BYTES);
                    assert!(serde_json::from_str::<serde_json::Value>(&invocation.payload).is_ok());
                    assert_eq!(invocation.method.as_str(), request.method);
                }
            }
        }
        1 => {
            if let Ok(request) = serde_json::from_slice::<CreateCommandRequest>(body) {
                round_trip(&request);
                if let Ok(document) = request.validate() {
                    let size = match document {
                        tether_domain::api::CommandDocument::Static { bytes, .. } => bytes.len(),
                        tether_domain::api::CommandDocument::Template(text) => text.len(),
                    };
                    assert!(size <= MAX_COMMAND_PAYLOAD, "{size}");
                }
            }
        }
        2 => {
            if let Ok(request) = serde_json::from_slice::<UpdateCommandRequest>(body) {
                round_trip(&request);
                let _ = request.validate();
            }
        }
        _ => {
            if let Ok(request) = serde_json::from_slice::<StartExecutionsRequest>(body) {
                round_trip(&request);
                if let Ok(start) = request.validate() {
                    assert!((1..=MAX_TARGETS).contains(&start.targets.len()));
                    for (i, target) in start.targets.iter().enumerate() {
                        assert!(!start.targets[..i].contains(target), "{target} twice");
                    }
                }
            }
        }
    }
});
