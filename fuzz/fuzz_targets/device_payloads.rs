//! What devices send: direct-invoke replies and Commands responses (including IN_PROGRESS
//! updates). No panic; an accepted payload, written back out, is accepted again as the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_domain::reply::{CommandResponse, DeviceReply};

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = DeviceReply::parse(data) {
        let text = serde_json::to_vec(&reply).expect("a reply serialises");
        assert_eq!(DeviceReply::parse(&text).as_ref(), Ok(&reply));
    }
    if let Ok(response) = CommandResponse::parse(data) {
        let text = serde_json::to_vec(&response).expect("a response serialises");
        assert_eq!(CommandResponse::parse(&text).as_ref(), Ok(&response));
    }
});
