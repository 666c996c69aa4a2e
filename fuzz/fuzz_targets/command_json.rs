//! Client commands (`protocol::command::parse_command`, PROTOCOL.md §4).
//!
//! Input: one WebSocket text/binary message. Checks: no panic; an accepted command's
//! topics pass `validate_topic`, its raw `payload` and `id` are themselves valid JSON and
//! lie inside the input; a refusal maps to a close code of PROTOCOL.md §7.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::command::{parse_command, validate_topic, Command, Publication};

/// Whether `bytes` is one JSON value by the grammar (RFC 8259). `RawValue`, not `Value`:
/// a number such as `1e400` is valid JSON that `Value` cannot hold as an `f64`.
fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<&serde_json::value::RawValue>(bytes).is_ok()
}

fn check_publication(publication: &Publication<'_>, input: &[u8]) {
    let input_range = input.as_ptr_range();
    for raw in [Some(publication.payload), publication.id]
        .into_iter()
        .flatten()
    {
        assert!(is_json(raw), "raw JSON part is not JSON: {raw:?}");
        let range = raw.as_ptr_range();
        if !raw.is_empty() && raw != b"null" {
            assert!(
                input_range.start <= range.start && range.end <= input_range.end,
                "raw part does not borrow the input"
            );
        }
    }
    if let Some(topic) = &publication.topic {
        assert!(validate_topic(topic).is_ok(), "unvalidated topic {topic:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    match parse_command(data) {
        Ok(Command::Subscribe { topic }) | Ok(Command::Unsubscribe { topic }) => {
            assert!(
                validate_topic(&topic).is_ok(),
                "unvalidated topic {topic:?}"
            );
        }
        Ok(Command::Publish(publication)) => {
            assert!(publication.topic.is_some(), "publish without a topic");
            check_publication(&publication, data);
        }
        Ok(Command::Message(publication)) => {
            assert!(publication.topic.is_none(), "message with a topic");
            check_publication(&publication, data);
        }
        Err(error) => {
            let code = error.close_code();
            assert!(
                matches!(code, 1002 | 1003 | 1007 | 1008 | 1009),
                "close code {code}"
            );
            assert!(!error.reason().is_empty());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = validate_topic(text);
    }
});
