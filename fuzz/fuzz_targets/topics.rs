//! The topic parsers: direct-invoke requests and replies, Commands topics, execution and
//! presence events, and MQTT filter matching. No panic; a parsed topic, rebuilt, is the topic it
//! was parsed from (nothing that could name another device or request is accepted loosely).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_domain::topics::{
    filter_matches, CommandTopic, ExecutionEventTopic, InvokeTopics, PresenceTopic,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let topics = InvokeTopics::new(InvokeTopics::DEFAULT_PREFIX).expect("the default prefix");
    if let Ok(request) = topics.parse_request(text) {
        assert_eq!(
            topics.request(&request.device, &request.method, &request.request_id),
            text
        );
    }
    if let Ok(reply) = topics.parse_reply(text) {
        assert_eq!(topics.reply(&reply.device, &reply.request_id), text);
    }
    if let Ok(topic) = CommandTopic::parse(text) {
        assert_eq!(topic.to_string(), text);
    }
    if let Ok(topic) = ExecutionEventTopic::parse(text) {
        assert_eq!(topic.to_string(), text);
    }
    if let Ok(topic) = PresenceTopic::parse(text) {
        assert_eq!(topic.to_string(), text);
    }
    if let Some((filter, topic)) = text.split_once('\n') {
        let _ = filter_matches(filter, topic);
    }
});
