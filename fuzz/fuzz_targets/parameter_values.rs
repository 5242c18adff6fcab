//! Commands parameter values in AWS's union shape, as the API, the adapter and local-iot read
//! them. No panic; an accepted value writes back to a shape that reads as the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_domain::parameter::ParameterValue;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(value) = ParameterValue::parse(&json) {
        let written = value.to_json();
        assert_eq!(ParameterValue::parse(&written), Ok(value.clone()));
        let _ = value.plain();
    }
});
