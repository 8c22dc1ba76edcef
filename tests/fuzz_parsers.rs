//! Property tests (proptest) of the parsers that see outside input: events, secret
//! documents, token values, environment URLs and the redaction of outside text. None may
//! panic, and none may echo a secret value in an error.
//!
//! Failing cases are kept in `tests/proptest-regressions/` (committed) and replayed first.

use dynatrace_token_rotator::document::SecretDocument;
use dynatrace_token_rotator::environment::EnvironmentUrl;
use dynatrace_token_rotator::event;
use dynatrace_token_rotator::secret::{TokenValue, is_current_format, redact_text};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};

fn dbg_of(v: &impl std::fmt::Debug) -> String {
    format!("{v:?}")
}

fn both(v: &(impl std::fmt::Debug + std::fmt::Display)) -> String {
    format!("{v} {v:?}")
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/fuzz_parsers.txt",
        ))),
        ..ProptestConfig::default()
    }
}

const UPPER: &str = "[A-Z0-9]";

/// A current-format token.
fn token() -> impl Strategy<Value = String> {
    (
        "dt0[a-zA-Z][0-9]{2}",
        proptest::string::string_regex(&format!("{UPPER}{{24}}")).unwrap(),
        proptest::string::string_regex(&format!("{UPPER}{{64}}")).unwrap(),
    )
        .prop_map(|(p, a, b)| format!("{p}.{a}.{b}"))
}

/// Any JSON value, a few levels deep, with strings that sometimes look like event fields.
fn json_value() -> impl Strategy<Value = Value> {
    json_value_with(any::<f64>().boxed())
}

fn json_value_with(floats: BoxedStrategy<f64>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        floats.prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::from),
        prop_oneof![
            Just("createSecret"),
            Just("rotate-vault"),
            Just("sweep"),
            Just("audit"),
            Just("enqueue-vault"),
            Just("aws:sqs"),
            Just("aws.events"),
            Just("Scheduled Event"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Step".to_owned()),
        Just("SecretId".to_owned()),
        Just("ClientRequestToken".to_owned()),
        Just("RotationToken".to_owned()),
        Just("Records".to_owned()),
        Just("action".to_owned()),
        Just("paths".to_owned()),
        Just("prefix".to_owned()),
        Just("dryRun".to_owned()),
        Just("batchSize".to_owned()),
        Just("source".to_owned()),
        Just("body".to_owned()),
        Just("messageId".to_owned()),
        Just("eventSource".to_owned()),
        "[a-zA-Z]{1,12}",
    ]
}

/// A valid event of each kind.
fn valid_event() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(
            json!({"Step":"createSecret","SecretId":"s","ClientRequestToken":"v","RotationToken":"RT-SECRET-0123456789"})
        ),
        Just(json!({"action":"rotate-vault","paths":["dynatrace/a"],"force":false,"dryRun":true})),
        Just(json!({"action":"rotate-vault","prefix":"dynatrace/"})),
        Just(json!({"source":"aws.events","detail-type":"Scheduled Event","detail":{}})),
        Just(
            json!({"Records":[{"eventSource":"aws:sqs","messageId":"m1","body":"{\"action\":\"rotate-vault\",\"paths\":[\"a\"]}"}]})
        ),
        Just(json!({"action":"sweep","dryRun":true})),
        Just(json!({"action":"audit"})),
        Just(json!({"action":"enqueue-vault","prefix":"dynatrace/","batchSize":7,"dryRun":true})),
    ]
}

/// One mutation of a JSON object: drop, replace or add a field, or change a field's type.
fn mutate(mut v: Value, k: String, new: Value, op: u8) -> Value {
    if let Some(map) = v.as_object_mut() {
        let existing: Vec<String> = map.keys().cloned().collect();
        let target = existing
            .get(k.len() % existing.len().max(1))
            .cloned()
            .unwrap_or(k.clone());
        match op % 4 {
            0 => {
                map.remove(&target);
            }
            1 => {
                map.insert(target, new);
            }
            2 => {
                map.insert(k, new);
            }
            _ => {
                let old = map.remove(&target).unwrap_or(Value::Null);
                map.insert(target, json!([old]));
            }
        }
    }
    v
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn event_parse_never_panics_on_any_json(v in json_value()) {
        let _ = event::parse(v);
    }

    #[test]
    fn event_parse_never_echoes_a_rotation_token(
        base in valid_event(),
        rt in "[A-Za-z0-9+/=_-]{12,80}",
        k in key(),
        new in json_value(),
        ops in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut v = base;
        let rt = format!("RT{rt}");
        for op in ops {
            v = mutate(v, k.clone(), new.clone(), op);
        }
        if let Some(map) = v.as_object_mut() {
            map.insert("RotationToken".into(), Value::String(rt.clone()));
        }
        match event::parse(v) {
            Ok(inv) => prop_assert!(!dbg_of(&inv).contains(&rt)),
            Err(e) => prop_assert!(!both(&e).contains(&rt), "{}", e),
        }
    }

    #[test]
    fn event_parse_action_never_panics(body in ".{0,200}") {
        let _ = event::parse_action(&body);
    }

    #[test]
    fn document_parse_never_panics_and_never_echoes(text in ".{0,300}", t in token()) {
        let _ = SecretDocument::parse(&text);
        let with_token = format!("{text}{t}{text}");
        if let Err(e) = SecretDocument::parse(&with_token) {
            prop_assert!(!both(&e).contains(&t));
        }
        let in_json = json!({"token": format!("{t}{text}"), "environmentUrl": text}).to_string();
        match SecretDocument::parse(&in_json) {
            Ok(d) => prop_assert!(!dbg_of(&d).contains(&t[8 + 24..])),
            Err(e) => prop_assert!(!both(&e).contains(&t[8 + 24..])),
        }
    }

    #[test]
    fn document_render_parse_round_trips_unknown_fields(
        t in token(),
        url in prop::option::of("https://[a-z]{1,10}\\.example\\.com"),
        extra in prop::collection::btree_map("[a-z][a-zA-Z0-9_]{0,10}", json_value(), 0..6),
    ) {
        let mut map = Map::new();
        for (k, v) in &extra {
            map.insert(format!("x_{k}"), v.clone());
        }
        map.insert("token".into(), Value::String(t.clone()));
        if let Some(u) = &url {
            map.insert("environmentUrl".into(), Value::String(u.clone()));
        }
        let text = Value::Object(map.clone()).to_string();
        let doc = SecretDocument::parse(&text).unwrap();
        prop_assert_eq!(doc.token.expose(), t.as_str());
        prop_assert_eq!(&doc.environment_url, &url);
        let rendered = doc.render();
        let again: Value = serde_json::from_str(rendered.expose_secret()).unwrap();
        prop_assert_eq!(&again, &Value::Object(map));
        let doc2 = SecretDocument::parse(rendered.expose_secret()).unwrap();
        let rendered2 = doc2.render();
        prop_assert_eq!(rendered2.expose_secret(), rendered.expose_secret());
        prop_assert!(!dbg_of(&doc).contains(&t[8 + 24..]));
    }

    #[test]
    fn token_parse_never_puts_the_input_in_an_error(s in ".{1,120}", t in token(), cut in 0usize..96) {
        for input in [s.clone(), format!("{t}{s}"), format!("{s}{t}"), t[..cut.min(t.len())].to_owned() + &s] {
            match TokenValue::parse(&input) {
                Ok(v) => prop_assert!(!both(&v).contains(&input)),
                Err(e) => {
                    let shown = format!("{} {:?}", e, e);
                    // (a one-character input can occur in the fixed message by chance)
                    if input.chars().count() >= 8 {
                        prop_assert!(!shown.contains(&input), "{}", shown);
                    }
                    prop_assert!(!shown.contains(&t[8 + 24..]));
                }
            }
        }
    }

    #[test]
    fn environment_url_never_accepts_insecure(
        scheme in prop_oneof![Just("http".to_owned()), Just("https".to_owned()), Just("ftp".to_owned()), Just("file".to_owned()), Just("ws".to_owned()), Just("HTTP".to_owned()), "[a-z]{1,6}"],
        host in prop_oneof![
            "[a-z0-9.-]{1,20}",
            "(0x)?[0-9a-f]{1,8}",
            "[0-9]{1,3}(\\.[0-9]{1,3}){0,3}",
            "\\[[0-9a-f:.]{2,30}\\]",
            Just("localhost".to_owned()),
            Just("127.0.0.1".to_owned()),
            ".{1,12}",
        ],
        port in prop::option::of(0u16..),
        path in "(/[a-zA-Z0-9%._~-]{0,8}){0,3}",
    ) {
        let raw = match port {
            Some(p) => format!("{scheme}://{host}:{p}{path}"),
            None => format!("{scheme}://{host}{path}"),
        };
        if let Ok(u) = EnvironmentUrl::parse(&raw) {
            let parsed = url::Url::parse(u.as_str()).unwrap();
            match parsed.scheme() {
                "https" => {}
                "http" => {
                    let ok = match parsed.host() {
                        Some(url::Host::Domain(d)) => d == "localhost",
                        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                        None => false,
                    };
                    prop_assert!(ok, "{} accepted as {}", raw, u);
                }
                other => prop_assert!(false, "{} accepted with scheme {}", raw, other),
            }
            // normalised form is a fixed point
            prop_assert_eq!(EnvironmentUrl::parse(u.as_str()).unwrap(), u);
        }
    }

    #[test]
    fn redact_text_never_leaves_a_full_token(
        parts in prop::collection::vec(prop_oneof![".{0,20}".boxed(), token().boxed(), Just("dt0".to_owned()).boxed(), Just("dt0c01.".to_owned()).boxed()], 0..8),
        max in 0usize..600,
    ) {
        let text: String = parts.concat();
        let out = redact_text(&text, max);
        prop_assert!(out.chars().count() <= max + 1);
        // no 95-byte window of the output is a current-format token
        let b = out.as_bytes();
        for i in 0..b.len().saturating_sub(94) {
            if out.is_char_boundary(i) && out.is_char_boundary(i + 95) {
                prop_assert!(!is_current_format(&out[i..i + 95]), "{}", out);
            }
        }
        for p in &parts {
            if is_current_format(p) {
                prop_assert!(!out.contains(&p[8 + 24..]));
            }
        }
    }
}

#[test]
fn redact_text_adjacent_and_overlapping_tokens() {
    let t = "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ01";
    for text in [
        format!("{t}{t}"),
        format!("dt0{t}"),
        format!("dt0c01.{t}"),
        format!("{}{t}", &t[..50]),
        format!("é{t}é"),
    ] {
        let out = redact_text(&text, 10_000);
        assert!(!out.contains(&t[32..]), "{out}");
    }
}

/// Found by `document_render_parse_round_trips_unknown_fields`: serde_json without its
/// `float_roundtrip` (or `arbitrary_precision`) feature may change the last digit of a
/// 17-significant-digit float in an unknown field, and again on every rotation. Fixed by
/// enabling `float_roundtrip` on the `serde_json` dependency (Cargo.toml).
#[test]
fn unknown_float_fields_drift_in_the_last_digit() {
    let t = "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ01";
    let text = format!(
        r#"{{"token":"{t}","ratio":9.416415518406777e175,"tiny":1.1116500475643699e-222}}"#
    );
    let doc = SecretDocument::parse(&text).unwrap();
    let out: Value = serde_json::from_str(doc.render().expose_secret()).unwrap();
    assert_eq!(out["ratio"].as_f64(), Some(9.416415518406777e175));
    assert_eq!(out["tiny"].as_f64(), Some(1.1116500475643699e-222));
}
