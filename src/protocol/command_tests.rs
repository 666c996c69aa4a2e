//! Tests for `command`: the four types, defaults, verbatim payloads and ids, errors.

use super::*;

fn publication(input: &str) -> Publication<'_> {
    match parse_command(input.as_bytes()).unwrap() {
        Command::Publish(publication) | Command::Message(publication) => publication,
        other => panic!("not a publication: {other:?}"),
    }
}

fn error(input: &[u8]) -> CommandError {
    parse_command(input).unwrap_err()
}

#[test]
fn parses_subscribe_and_unsubscribe() {
    let subscribe = br#"{"type":"subscribe","data":{"topic":"notifications"}}"#;
    assert_eq!(
        parse_command(subscribe).unwrap(),
        Command::Subscribe {
            topic: "notifications".into()
        }
    );
    let unsubscribe =
        br#" { "data" : { "topic" : "a/b" , "extra": [1,{"x":2}] }, "type" : "unsubscribe" } "#;
    assert_eq!(
        parse_command(unsubscribe).unwrap(),
        Command::Unsubscribe {
            topic: "a/b".into()
        }
    );
}

#[test]
fn borrows_plain_topics_and_decodes_escaped_ones() {
    match parse_command(br#"{"type":"subscribe","data":{"topic":"chat"}}"#).unwrap() {
        Command::Subscribe { topic } => assert!(matches!(topic, Cow::Borrowed("chat"))),
        other => panic!("{other:?}"),
    }
    let escaped = br#"{"type":"subscribe","data":{"topic":"caf\u00e9 \"q\" \/x"}}"#;
    assert_eq!(
        parse_command(escaped).unwrap(),
        Command::Subscribe {
            topic: "café \"q\" /x".into()
        }
    );
    // Escaped keys are field names too.
    let escaped_key = br#"{"typ\u0065":"subscribe","data":{"t\u006fpic":"x"}}"#;
    assert_eq!(
        parse_command(escaped_key).unwrap(),
        Command::Subscribe { topic: "x".into() }
    );
}

#[test]
fn parses_publish_with_every_field_verbatim() {
    let input = r#"{"type":"publish","data":{"topic":"chat","messageType":"text-message","compress":true,"payload": { "n" : 1.0e10, "s":"\u00e9\n", "deep":[[{}],null] } ,"id":"k3j9x0a1b2"}}"#;
    let parsed = publication(input);
    assert_eq!(parsed.topic.as_deref(), Some("chat"));
    assert_eq!(parsed.message_type, "text-message");
    assert!(parsed.compress);
    assert_eq!(
        parsed.payload,
        br#"{ "n" : 1.0e10, "s":"\u00e9\n", "deep":[[{}],null] }"#
    );
    assert_eq!(parsed.id, Some(&br#""k3j9x0a1b2""#[..]));
}

#[test]
fn keeps_scalar_payloads_and_ids_byte_exact() {
    for payload in [
        "1.0e10",
        "-0",
        "12345678901234567890123",
        "\"Hello\"",
        "true",
        "[]",
    ] {
        let input =
            format!(r#"{{"type":"publish","data":{{"topic":"t","payload":{payload},"id":7.50}}}}"#);
        let parsed = publication(&input);
        assert_eq!(parsed.payload, payload.as_bytes());
        assert_eq!(parsed.id, Some(&b"7.50"[..]));
    }
    let object_id = publication(r#"{"type":"message","data":{"id":{"a":1}}}"#);
    assert_eq!(object_id.id, Some(&br#"{"a":1}"#[..]));
}

#[test]
fn applies_defaults() {
    let minimal = publication(r#"{"type":"publish","data":{"topic":"t"}}"#);
    assert_eq!(
        minimal,
        Publication {
            topic: Some("t".into()),
            message_type: "broadcast".into(),
            compress: false,
            payload: b"null",
            id: None,
        }
    );
    let nulls = publication(
        r#"{"type":"publish","data":{"topic":"t","messageType":null,"compress":null,"payload":null,"id":null}}"#,
    );
    assert_eq!(nulls, minimal);
    let empty_type = publication(r#"{"type":"publish","data":{"topic":"t","messageType":""}}"#);
    assert_eq!(empty_type.message_type, "broadcast");
}

#[test]
fn parses_message_and_ignores_its_topic() {
    let parsed = parse_command(
        br#"{"type":"message","data":{"topic":[1,2],"messageType":"gettime","payload":{"a":1},"id":"7f3a"}}"#,
    )
    .unwrap();
    assert_eq!(
        parsed,
        Command::Message(Publication {
            topic: None,
            message_type: "gettime".into(),
            compress: false,
            payload: br#"{"a":1}"#,
            id: Some(br#""7f3a""#),
        })
    );
}

#[test]
fn rejects_bad_bytes_and_json() {
    assert_eq!(
        error(b"{\"type\":\"subscribe\",\"data\":{\"topic\":\"\xFF\"}}"),
        CommandError::NotUtf8
    );
    for input in [
        &b""[..],
        b"{",
        b"{\"type\":}",
        b"{} x",
        b"{\"a\":1,}",
        b"nul",
    ] {
        assert_eq!(error(input), CommandError::InvalidJson, "{input:?}");
    }
    // Nesting deeper than MAX_JSON_NESTING (128, the command object and `data` included)
    // is refused before parsing, whatever else is wrong with the text; up to the limit, the
    // payload is passed on verbatim (raw values are scanned iteratively by serde_json).
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let command = |payload: &str| {
        format!(r#"{{"type":"publish","data":{{"topic":"t","payload":{payload},"x":1}}}}"#)
    };
    assert_eq!(
        publication(&command(&nested(126))).payload,
        nested(126).as_bytes()
    );
    for depth in [127, 100_000] {
        assert_eq!(
            error(command(&nested(depth)).as_bytes()),
            CommandError::NestingTooDeep
        );
    }
    let unbalanced = command(&"[".repeat(100_000));
    assert_eq!(error(unbalanced.as_bytes()), CommandError::NestingTooDeep);
    assert_eq!(
        error(nested(100_000).as_bytes()),
        CommandError::NestingTooDeep
    );
    assert_eq!(error(nested(100).as_bytes()), CommandError::NotAnObject);
    assert_eq!(CommandError::NestingTooDeep.close_code(), 1008);
    assert_eq!(
        CommandError::NestingTooDeep.reason(),
        "Message nesting too deep"
    );
    assert_eq!(CommandError::NotUtf8.close_code(), 1007);
    assert_eq!(CommandError::InvalidJson.close_code(), 1007);
}

#[test]
fn rejects_bad_structure() {
    let cases: [(&str, CommandError); 20] = [
        ("[]", CommandError::NotAnObject),
        ("null", CommandError::NotAnObject),
        ("\"subscribe\"", CommandError::NotAnObject),
        ("{}", CommandError::UnknownType),
        (r#"{"type":1,"data":{}}"#, CommandError::UnknownType),
        (
            r#"{"type":"Subscribe","data":{"topic":"t"}}"#,
            CommandError::UnknownType,
        ),
        (r#"{"type":"send","data":{}}"#, CommandError::UnknownType),
        (
            r#"{"type":"subscribe","type":"publish","data":{"topic":"t"}}"#,
            CommandError::DuplicateField,
        ),
        (
            r#"{"type":"subscribe","data":{"topic":"t","topic":"u"}}"#,
            CommandError::DuplicateField,
        ),
        (r#"{"type":"subscribe"}"#, CommandError::MissingData),
        (
            r#"{"type":"subscribe","data":null}"#,
            CommandError::MissingData,
        ),
        (
            r#"{"type":"subscribe","data":["t"]}"#,
            CommandError::DataNotObject,
        ),
        (
            r#"{"type":"subscribe","data":"t"}"#,
            CommandError::DataNotObject,
        ),
        (
            r#"{"type":"subscribe","data":{}}"#,
            CommandError::MissingTopic,
        ),
        (
            r#"{"type":"publish","data":{"topic":null}}"#,
            CommandError::MissingTopic,
        ),
        (
            r#"{"type":"unsubscribe","data":{"topic":5}}"#,
            CommandError::TopicNotString,
        ),
        (
            r#"{"type":"subscribe","data":{"topic":""}}"#,
            CommandError::TopicEmpty,
        ),
        (
            r#"{"type":"subscribe","data":{"topic":"a\u0007b"}}"#,
            CommandError::TopicControlCharacter,
        ),
        (
            r#"{"type":"publish","data":{"topic":"t","messageType":3}}"#,
            CommandError::InvalidMessageType,
        ),
        (
            r#"{"type":"message","data":{"compress":"yes"}}"#,
            CommandError::InvalidCompress,
        ),
    ];
    for (input, expected) in cases {
        let actual = error(input.as_bytes());
        assert_eq!(actual, expected, "{input}");
        assert_eq!(actual.close_code(), 1008, "{input}");
        assert!(actual.reason().len() <= 123);
    }
}

#[test]
fn validates_topic_length_in_bytes() {
    assert_eq!(validate_topic(&"a".repeat(256)), Ok(()));
    assert_eq!(
        validate_topic(&"a".repeat(257)),
        Err(CommandError::TopicTooLong)
    );
    // 128 two-byte characters are 256 bytes; one more is too long.
    assert_eq!(validate_topic(&"é".repeat(128)), Ok(()));
    assert_eq!(
        validate_topic(&"é".repeat(129)),
        Err(CommandError::TopicTooLong)
    );
    assert_eq!(
        validate_topic("a\u{7f}"),
        Err(CommandError::TopicControlCharacter)
    );
    assert_eq!(
        validate_topic("a\u{85}"),
        Err(CommandError::TopicControlCharacter)
    );
    assert_eq!(validate_topic("priv/4389b2ed1a7e"), Ok(()));
    assert_eq!(CommandError::TopicTooLong.reason(), "Invalid topic");
}

#[test]
fn never_panics_on_mutated_commands() {
    let seed = br#"{"type":"publish","data":{"topic":"t\u00e9","messageType":"m","compress":false,"payload":{"a":[1,"x"]},"id":"i"}}"#;
    for index in 0..seed.len() {
        for replacement in [b'"', b'{', b'}', b'\\', b'[', b':', b',', 0xC3, b'0'] {
            let mut input = seed.to_vec();
            input[index] = replacement;
            let _ = parse_command(&input);
            input.truncate(index);
            let _ = parse_command(&input);
        }
    }
}

/// Every variant, so that a new one cannot skip the mapping test below.
const ALL_ERRORS: [CommandError; 15] = [
    CommandError::NotUtf8,
    CommandError::InvalidJson,
    CommandError::NestingTooDeep,
    CommandError::NotAnObject,
    CommandError::UnknownType,
    CommandError::DuplicateField,
    CommandError::MissingData,
    CommandError::DataNotObject,
    CommandError::MissingTopic,
    CommandError::TopicNotString,
    CommandError::TopicEmpty,
    CommandError::TopicTooLong,
    CommandError::TopicControlCharacter,
    CommandError::InvalidMessageType,
    CommandError::InvalidCompress,
];

#[test]
fn command_errors_map_to_close_kinds() {
    for error in ALL_ERRORS {
        let expected = match error {
            CommandError::NotUtf8 | CommandError::InvalidJson => CloseKind::InvalidJson,
            CommandError::NestingTooDeep => CloseKind::NestingTooDeep,
            CommandError::TopicNotString
            | CommandError::TopicEmpty
            | CommandError::TopicTooLong
            | CommandError::TopicControlCharacter => CloseKind::InvalidTopic,
            _ => CloseKind::MalformedCommand,
        };
        let kind = CloseKind::from(&error);
        assert_eq!(kind, expected, "{error:?}");
        assert_eq!(kind.code(), error.close_code(), "{error:?}");
    }
    // The codes PROTOCOL.md §7 names, and the reasons clients see.
    assert_eq!(CloseKind::from(&CommandError::NotUtf8).code(), 1007);
    assert_eq!(CloseKind::from(&CommandError::UnknownType).code(), 1008);
    assert_eq!(
        CloseKind::from(&CommandError::TopicTooLong).reason(),
        "Invalid topic"
    );
    assert_eq!(
        CloseKind::from(&CommandError::NestingTooDeep).reason(),
        "Message nesting too deep"
    );
}
