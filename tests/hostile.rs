//! Hostile input: events, secret documents, URLs and server answers crafted to break the
//! rotator. Each case must end in a clear error, change nothing (no token minted in the
//! emulator, no secret version written) and leak nothing (`assert_no_leaks`).
//!
//! Malformed or huge answers from "Dynatrace" and "Vault" come from the sandbox's loopback
//! stub server ([`StubServer`]), since the emulator only answers well-formed bodies.

mod support;

use std::time::Duration;

use dynatrace_emulator::{FaultKind, FaultRule, PathMatch};
use dynatrace_token_rotator::app::{self, Deps, HandlerError};
use dynatrace_token_rotator::config::Config;
use dynatrace_token_rotator::deadline::Deadline;
use dynatrace_token_rotator::dynatrace::Dynatrace;
use dynatrace_token_rotator::environment::EnvironmentUrl;
use dynatrace_token_rotator::event::MAX_EVENT_BYTES;
use dynatrace_token_rotator::logging;
use dynatrace_token_rotator::vault::rotate::VaultBackend;
use rotator_sandbox::secrets_manager::{self, STEPS};
use rotator_sandbox::{LogCapture, Moto, Recorded, Reply, StubServer};
use serde_json::{Value, json};
use support::{ROTATION_TOKEN, VaultWorld, World, fast_retries};

// ---------------------------------------------------------------------------------------
// helpers

/// A syntactically valid current-format token that no server knows (`seed` makes it unique).
fn fake_token(seed: char) -> String {
    let public: String = std::iter::repeat_n(seed, 24).collect();
    let secret: String = format!("{}{}", seed, "Q7".repeat(31)) + "Z";
    format!("dt0c01.{public}.{secret}")
}

/// Asserts `r` failed with `error_type`; returns the message.
fn expect_err(r: Result<Value, HandlerError>, error_type: &str) -> String {
    match r {
        Ok(v) => panic!("expected {error_type}, got success: {v}"),
        Err(e) => {
            assert_eq!(e.error_type, error_type, "{}", e.message);
            assert!(!e.message.is_empty());
            e.message
        }
    }
}

/// A secret in the pending state (after `RotateSecret`), holding `value`; returns (name, version).
async fn pending_secret(w: &World, value: &str) -> (String, String) {
    let name = w.secret_with(value).await;
    let version = w.begin(&name).await;
    (name, version)
}

/// Nothing changed: no token minted, no value written under `version`, labels as before.
async fn assert_untouched(w: &World, secret: &str, version: &str, current_before: &str) {
    assert!(
        w.minted().is_empty(),
        "a token was minted: {:?}",
        w.minted()
    );
    assert_eq!(
        secrets_manager::value_of_version(&w.secrets_manager, secret, version)
            .await
            .ok()
            .flatten(),
        None,
        "a pending value was written"
    );
    let stages = w.stages(secret).await;
    assert_eq!(
        stages.get(version).cloned().unwrap_or_default(),
        ["AWSPENDING"]
    );
    assert_eq!(
        secrets_manager::value_at(&w.secrets_manager, secret, secrets_manager::AWSCURRENT)
            .await
            .unwrap()
            .as_deref(),
        Some(current_before),
        "AWSCURRENT changed"
    );
}

/// Invokes `step` with a document `value` and expects `error_type`, nothing changed.
async fn refused_document(w: &World, value: &str, error_type: &str) -> String {
    let (secret, version) = pending_secret(w, value).await;
    let msg = expect_err(w.step(&secret, &version, "createSecret").await, error_type);
    assert_untouched(w, &secret, &version, value).await;
    msg
}

/// An answer with `Content-Type: content_type` (and no other header field) and `body`.
fn fixed(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
    Reply::new(status)
        .header("Content-Type", content_type)
        .body(body)
}

/// A stub answering every request with `reply`.
fn always(reply: Reply) -> StubServer {
    StubServer::replies(vec![reply])
}

/// Whether `r` is a request to mint a token (`POST /api/v2/apiTokens`).
fn is_mint(r: &Recorded) -> bool {
    r.method == "POST" && r.path == "/api/v2/apiTokens"
}

/// Secrets Manager (moto) with a manager document and an application secret that both point
/// at a stub "Dynatrace"; the app secret is pending rotation.
struct StubDtWorld {
    deps: Deps,
    logs: LogCapture,
    _guard: tracing::subscriber::DefaultGuard,
    secret: String,
    version: String,
    app_value: String,
    manager_value: String,
    secrets_manager: aws_sdk_secretsmanager::Client,
}

impl StubDtWorld {
    async fn new(stub: &StubServer) -> StubDtWorld {
        let (guard, logs) = LogCapture::install_with_filter(&logging::directives("trace"));
        let sm = Moto::shared().client();
        let manager_value = fake_token('M');
        let app_value = fake_token('A');
        let manager = format!(
            "dynatrace/stub-manager-{}",
            rotator_sandbox::unique_suffix()
        );
        secrets_manager::create_secret(
            &sm,
            &manager,
            &json!({"environmentUrl": stub.url(), "token": manager_value}).to_string(),
        )
        .await
        .unwrap();
        let secret = format!("dynatrace/stub-app-{}", rotator_sandbox::unique_suffix());
        secrets_manager::create_secret(
            &sm,
            &secret,
            &json!({"environmentUrl": stub.url(), "token": app_value}).to_string(),
        )
        .await
        .unwrap();
        let version = secrets_manager::begin_rotation(&sm, &secret, secrets_manager::LAMBDA_ARN)
            .await
            .unwrap();
        let config =
            Config::from_lookup(|k| (k == "DT_MANAGER_SECRET_IDS").then(|| manager.clone()))
                .unwrap();
        let deps = Deps {
            config,
            secrets_manager: sm.clone(),
            sqs: Moto::shared().sqs_client(),
            dynatrace: Dynatrace::new(fast_retries()).unwrap(),
            vault: None,
        };
        StubDtWorld {
            deps,
            logs,
            _guard: guard,
            secret,
            version,
            app_value,
            manager_value,
            secrets_manager: sm,
        }
    }

    async fn create(&self) -> Result<Value, HandlerError> {
        app::handle(
            &self.deps,
            json!({"Step": "createSecret", "SecretId": self.secret, "ClientRequestToken": self.version, "RotationToken": ROTATION_TOKEN}),
            Deadline::after(Duration::from_secs(30)),
        )
        .await
    }

    /// Nothing written, nothing leaked (in logs or `extra`).
    async fn assert_clean(&self, extra: &str) {
        assert_eq!(
            secrets_manager::value_of_version(&self.secrets_manager, &self.secret, &self.version)
                .await
                .ok()
                .flatten(),
            None,
            "a pending value was written"
        );
        let hay = self.logs.text() + extra;
        for v in [&self.app_value, &self.manager_value] {
            assert!(!hay.contains(v.as_str()), "a token value leaked");
            assert!(
                !hay.contains(v.rsplit('.').next().unwrap()),
                "a secret part leaked"
            );
        }
        assert!(!hay.contains(ROTATION_TOKEN), "the RotationToken leaked");
    }
}

/// Handler dependencies with Vault at `addr` (token auth with `vault_token`).
fn vault_deps(addr: &str, vault_token: &str) -> Deps {
    let config = Config::from_lookup(|k| match k {
        "VAULT_ADDR" => Some(addr.to_owned()),
        "VAULT_TOKEN" => Some(vault_token.to_owned()),
        _ => None,
    })
    .unwrap();
    let backend = VaultBackend::new(config.vault.as_ref().unwrap(), None).unwrap();
    Deps {
        config,
        secrets_manager: Moto::shared().client(),
        sqs: Moto::shared().sqs_client(),
        dynatrace: Dynatrace::new(fast_retries()).unwrap(),
        vault: Some(backend),
    }
}

// ---------------------------------------------------------------------------------------
// events

#[tokio::test]
async fn oversized_event_is_refused_before_anything() {
    let w = World::new(&[]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    let current =
        secrets_manager::value_at(&w.secrets_manager, &secret, secrets_manager::AWSCURRENT)
            .await
            .unwrap()
            .unwrap();
    let version = w.begin(&secret).await;
    // A valid step whose unknown padding field makes it larger than the limit: rotation
    // events tolerate unknown fields, so only the size check can stop it.
    let pad = "x".repeat(MAX_EVENT_BYTES);
    let msg = expect_err(
        w.invoke(
            json!({"Step": "createSecret", "SecretId": secret, "ClientRequestToken": version,
            "RotationToken": ROTATION_TOKEN, "padding": pad}),
        )
        .await,
        "MalformedEvent",
    );
    assert!(msg.contains("bytes"), "{msg}");
    assert!(msg.len() < 300, "the error does not echo the event");
    assert!(w.emu.requests().is_empty(), "no Dynatrace call");
    assert_untouched(&w, &secret, &version, &current).await;
    assert!(w.token(&original.id).enabled);
    // just under the limit still works as usual (not refused for its size)
    let small = "x".repeat(1000);
    w.invoke(
        json!({"Step": "createSecret", "SecretId": secret, "ClientRequestToken": version,
            "RotationToken": ROTATION_TOKEN, "padding": small}),
    )
    .await
    .expect("a normal-size event with an unknown field is accepted");
    w.assert_no_leaks();
}

#[tokio::test]
async fn deeply_nested_events_are_refused() {
    // 10,000 levels never reach the handler: the runtime decodes payloads with serde_json,
    // whose recursion limit (128) refuses them with a clear error instead of overflowing.
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let text = format!(r#"{{"Step":"createSecret","SecretId":{deep},"ClientRequestToken":"v"}}"#);
    let err = serde_json::from_str::<Value>(&text).unwrap_err();
    assert!(err.to_string().contains("recursion limit"), "{err}");

    // What can reach the handler (under the limit) is refused field by field.
    let w = World::new(&[]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    let current =
        secrets_manager::value_at(&w.secrets_manager, &secret, secrets_manager::AWSCURRENT)
            .await
            .unwrap()
            .unwrap();
    let version = w.begin(&secret).await;
    let nested = "[".repeat(120) + &"]".repeat(120);
    let nested: Value = serde_json::from_str(&nested).unwrap();
    let msg = expect_err(
        w.invoke(
            json!({"Step": "createSecret", "SecretId": nested, "ClientRequestToken": version}),
        )
        .await,
        "MalformedEvent",
    );
    assert!(msg.contains("SecretId"), "{msg}");
    let nested_action: Value = serde_json::from_str(
        &(r#"{"action":"#.to_owned() + &"[".repeat(120) + &"]".repeat(120) + "}"),
    )
    .unwrap();
    expect_err(w.invoke(nested_action).await, "MalformedEvent");
    assert_untouched(&w, &secret, &version, &current).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn unknown_fields_tolerated_in_rotation_steps_refused_in_rotate_vault() {
    let w = World::new(&[]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    let version = w.begin(&secret).await;
    for step in STEPS {
        w.invoke(
            json!({"Step": step, "SecretId": secret, "ClientRequestToken": version,
                "RotationToken": ROTATION_TOKEN, "SomethingNew": {"x": 1}, "step": "ignored"}),
        )
        .await
        .unwrap_or_else(|e| panic!("{step} with unknown fields: {e}"));
    }
    w.assert_invariants(&secret).await;
    assert_eq!(w.minted().len(), 1);

    // rotate-vault refuses unknown fields (even without Vault configured: decoding comes first)
    let msg = expect_err(
        w.invoke(json!({"action": "rotate-vault", "paths": ["a"], "dryrun": true}))
            .await,
        "MalformedEvent",
    );
    assert!(msg.contains("dryrun"), "names the unknown field: {msg}");
    expect_err(
        w.invoke(
            json!({"action": "rotate-vault", "paths": ["a"], "RotationToken": ROTATION_TOKEN}),
        )
        .await,
        "MalformedEvent",
    );
    assert_eq!(w.minted().len(), 1, "nothing more minted");
    w.assert_no_leaks();
}

#[tokio::test]
async fn rotation_token_that_is_not_a_string_and_oversized_ids() {
    let w = World::new(&[]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    let current =
        secrets_manager::value_at(&w.secrets_manager, &secret, secrets_manager::AWSCURRENT)
            .await
            .unwrap()
            .unwrap();
    let version = w.begin(&secret).await;
    for rt in [
        json!(12345),
        json!({"value": ROTATION_TOKEN}),
        json!([ROTATION_TOKEN]),
        json!(true),
    ] {
        let msg = expect_err(
            w.invoke(json!({"Step": "createSecret", "SecretId": secret, "ClientRequestToken": version, "RotationToken": rt}))
                .await,
            "MalformedEvent",
        );
        assert!(msg.contains("RotationToken"), "{msg}");
    }
    // ClientRequestToken of 10,000 characters
    let long = "v".repeat(10_000);
    let msg = expect_err(
        w.invoke(json!({"Step": "createSecret", "SecretId": secret, "ClientRequestToken": long}))
            .await,
        "MalformedEvent",
    );
    assert!(
        msg.contains("ClientRequestToken") && msg.len() < 300,
        "{msg}"
    );
    // Step of the wrong case / type
    expect_err(
        w.invoke(json!({"Step": "CreateSecret\r\nX-Evil: 1", "SecretId": secret, "ClientRequestToken": version}))
            .await,
        "UnknownStep",
    );
    expect_err(
        w.invoke(json!({"Step": 1, "SecretId": secret, "ClientRequestToken": version}))
            .await,
        "MalformedEvent",
    );
    // not an object at all
    for v in [json!(null), json!("createSecret"), json!([1, 2]), json!(7)] {
        expect_err(w.invoke(v).await, "MalformedEvent");
    }
    assert_untouched(&w, &secret, &version, &current).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn secret_id_with_traversal_or_control_characters() {
    let w = World::new(&[]).await;
    for id in [
        "../../etc/passwd",
        "..%2f..%2fetc",
        "dynatrace/app\u{0}\r\nX-Evil: 1",
        "dynatrace/\u{202e}ppa",
        "arn:aws:secretsmanager:us-east-1:000000000000:secret:../other",
    ] {
        let e = w
            .invoke(json!({"Step": "createSecret", "SecretId": id, "ClientRequestToken": "11111111-2222-3333-4444-555555555555",
                "RotationToken": ROTATION_TOKEN}))
            .await
            .unwrap_err();
        assert!(
            ["SecretNotFound", "SecretsManagerError"].contains(&e.error_type),
            "{id:?}: {e}"
        );
    }
    // The log lines stay single JSON lines: a CR/LF in an id cannot forge a line.
    for line in w.logs.text().lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|_| panic!("forged log line: {line}"));
        assert!(!line.starts_with("X-Evil"));
    }
    assert!(w.minted().is_empty());
    assert!(w.emu.requests().is_empty(), "no Dynatrace call");
    w.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------
// secret documents

#[tokio::test]
async fn binary_and_control_character_documents() {
    let w = World::new(&[]).await;
    // SecretBinary (bytes that are not a string)
    let name = format!("dynatrace/bin-{}", rotator_sandbox::unique_suffix());
    w.secrets_manager
        .create_secret()
        .name(&name)
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(vec![
            0xff, 0xfe, 0x00, 0x80, 0xc3,
        ]))
        .send()
        .await
        .unwrap();
    let version = w.begin(&name).await;
    let e = w.step(&name, &version, "createSecret").await.unwrap_err();
    assert_eq!(e.error_type, "NoCurrentValue", "{e}");
    assert!(w.minted().is_empty());

    let token = w
        .emu
        .seed_token(dynatrace_emulator::SeedToken::new("x", &["metrics.read"]));
    let url = w.emu.url();
    let t = &token.value;
    for doc in [
        format!("{{\"environmentUrl\":\"{url}\",\"token\":\"{t}\\u0000\"}}"),
        format!("{{\"environmentUrl\":\"{url}\",\"token\":\"\\u0000{t}\"}}"),
        format!("{{\"environmentUrl\":\"{url}\",\"token\":\"{t}\\u001b[2J\"}}"),
        format!("{{\"environmentUrl\":\"{url}\",\"token\":\"{t}\"\u{0}}}"),
        format!("{t}\u{0}"),
        format!("\u{0}{t}"),
        format!("{{\"token\":\"\\ud800{t}\"}}"),
        "\u{feff}{\"token\":1}".to_owned(),
        "{\"token\": null}".to_owned(),
        "{}".to_owned(),
    ] {
        let (secret, version) = pending_secret(&w, &doc).await;
        let e = w.step(&secret, &version, "createSecret").await.unwrap_err();
        assert!(
            [
                "InvalidSecretDocument",
                "NoCurrentValue",
                "SecretsManagerError"
            ]
            .contains(&e.error_type),
            "{doc:?}: {e}"
        );
        assert!(!e.message.contains(t.as_str()));
        assert!(w.minted().is_empty(), "{doc:?}: minted");
        assert_eq!(
            secrets_manager::value_of_version(&w.secrets_manager, &secret, &version)
                .await
                .ok()
                .flatten(),
            None
        );
    }
    assert!(
        w.emu
            .requests()
            .iter()
            .all(|r| r.path != "/api/v2/apiTokens"),
        "nothing created"
    );
    w.assert_no_leaks();
}

#[tokio::test]
async fn tokens_with_injected_characters_are_refused_before_any_call() {
    let w = World::new(&[]).await;
    let token = w
        .emu
        .seed_token(dynatrace_emulator::SeedToken::new("x", &["metrics.read"]));
    let t = token.value.clone();
    let lookalike = t
        .replacen('A', "\u{0410}", 1)
        .replacen("dt0c01", "dt0с01", 1); // Cyrillic
    let fullwidth = format!("dt0c01.{}", &t[7..]).replacen('0', "\u{ff10}", 1);
    let cases = [
        format!("{t}\n"),
        format!("{t}\r\nX-Evil: 1"),
        format!("{}\r\nX-Evil: 1", &t[..t.len() - 11]),
        format!("{} {}", &t[..40], &t[41..]),
        format!(" {t} x"),
        lookalike,
        fullwidth,
        format!("{t}garbage"),
        format!("{t}.{}", "A".repeat(64)),
        t.to_lowercase(),
        "legacy token with spaces!!".to_owned(),
        "Ab3_defGhij-KLmn\r\nX-Evil: 1".to_owned(),
        "a".repeat(41),
    ];
    for bad in &cases {
        let doc = json!({"environmentUrl": w.emu.url(), "token": bad}).to_string();
        let msg = refused_document(&w, &doc, "InvalidSecretDocument").await;
        assert!(
            !msg.contains(bad.as_str()) && !msg.contains(&t[30..]),
            "{msg}"
        );
    }
    assert!(
        w.emu.requests().is_empty(),
        "refused before any call: {:?}",
        w.emu.requests()
    );
    w.assert_no_leaks();
}

#[tokio::test]
async fn forbidden_scopes_are_refused_with_nothing_minted() {
    let w = World::new(&[]).await;
    let token = w.emu.seed_token(dynatrace_emulator::SeedToken::new(
        "too powerful",
        &["metrics.read", "apiTokens.write"],
    ));
    let doc = json!({"environmentUrl": w.emu.url(), "token": token.value}).to_string();
    let msg = refused_document(&w, &doc, "ForbiddenScopes").await;
    assert!(msg.contains("apiTokens.write"), "{msg}");
    assert!(w.token(&token.id).enabled);
    assert!(
        w.emu
            .requests()
            .iter()
            .all(|r| r.path != "/api/v2/apiTokens")
    );
    w.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------
// environment URLs

#[test]
fn ip_literal_tricks_normalise_as_the_url_crate_does() {
    // WHATWG IPv4 parsing: hex, short and decimal forms are 127.0.0.1 — real loopback.
    for (raw, norm) in [
        ("http://0x7f000001", "http://127.0.0.1"),
        ("http://127.1", "http://127.0.0.1"),
        ("http://2130706433", "http://127.0.0.1"),
        ("http://0177.0.0.1", "http://127.0.0.1"),
        ("http://127.0.0.1.", "http://127.0.0.1"),
        ("HTTP://LOCALHOST:80/", "http://localhost"),
        ("http://[0:0:0:0:0:0:0:1]:8080", "http://[::1]:8080"),
        ("http://12\u{ff17}.0.0.1", "http://127.0.0.1"),
    ] {
        assert_eq!(
            EnvironmentUrl::parse(raw).map(|u| u.to_string()),
            Ok(norm.to_owned()),
            "{raw}"
        );
    }
    // Not loopback for the rule: IPv4-mapped IPv6 (refused even for 127.0.0.1), private or
    // public addresses, names that merely start with loopback-looking labels.
    for raw in [
        "http://[::ffff:127.0.0.1]",
        "http://[::ffff:7f00:1]",
        "http://[::127.0.0.1]",
        "http://0x0a000001",
        "http://167772161",
        "http://0",
        "http://0.0.0.0",
        "http://[::]",
        "http://127.0.0.1.nip.io",
        "http://localhost.localdomain.evil",
        "http://localhost%2e.evil",
        "http://169.254.169.254",
    ] {
        assert!(EnvironmentUrl::parse(raw).is_err(), "{raw} accepted");
    }
    for raw in [
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "gopher://127.0.0.1:70/",
        "data:text/plain,hi",
        "ws://127.0.0.1",
        "https://",
        "//abc.live.dynatrace.com",
    ] {
        assert!(EnvironmentUrl::parse(raw).is_err(), "{raw} accepted");
    }
}

#[tokio::test]
async fn hostile_environment_urls_are_refused_before_any_call() {
    let w = World::new(&[]).await;
    let token = w
        .emu
        .seed_token(dynatrace_emulator::SeedToken::new("x", &["metrics.read"]));
    let port = w.emu.local_addr().port();
    for url in [
        format!("http://user:hunter2@127.0.0.1:{port}"),
        format!("https://user:hunter2@127.0.0.1:{port}"),
        format!("http://:hunter2@127.0.0.1:{port}"),
        format!("ftp://127.0.0.1:{port}"),
        "file:///etc/passwd".to_owned(),
        "javascript:alert(1)".to_owned(),
        format!("gopher://127.0.0.1:{port}/_"),
        "http://abc12345.live.dynatrace.com".to_owned(),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        format!("http://127.0.0.1:{port}/?next=evil"),
        format!("http://127.0.0.1:{port}/#frag"),
        "not a url".to_owned(),
        format!("http://127.0.0.1:{port}\r\nX-Evil: 1"),
    ] {
        let doc = json!({"environmentUrl": url, "token": token.value}).to_string();
        let msg = refused_document(&w, &doc, "InvalidEnvironmentUrl").await;
        assert!(!msg.contains("hunter2"), "{msg}");
    }
    assert!(w.emu.requests().is_empty(), "{:?}", w.emu.requests());
    w.assert_no_leaks();
}

#[tokio::test]
async fn environment_url_written_differently_but_equal_is_accepted() {
    let mut first = true;
    for form in [
        "HTTP://127.0.0.1:{port}/",
        "http://0x7f000001:{port}",
        "http://127.1:{port}//",
        "http://2130706433:{port}/",
        "  http://127.0.0.1:{port}  ",
    ] {
        let w = World::new(&[]).await;
        let port = w.emu.local_addr().port();
        if first {
            assert_eq!(
                w.emu.url(),
                format!("http://127.0.0.1:{port}"),
                "fixture assumption"
            );
            first = false;
        }
        let url = form.replace("{port}", &port.to_string());
        let (secret, _) = w.app_secret(json!({"environmentUrl": url})).await;
        w.rotate(&secret).await;
        let doc = w.doc(&secret, secrets_manager::AWSCURRENT).await.unwrap();
        assert_eq!(doc["environmentUrl"], url.as_str(), "kept as written");
        w.assert_invariants(&secret).await;
        w.assert_no_leaks();
    }
}

#[tokio::test]
async fn lookalike_hosts_of_the_manager_are_refused() {
    let mut w = World::new(&[]).await;
    // a second manager for a real-looking SaaS environment (never contacted)
    let other = format!("dynatrace/manager2-{}", rotator_sandbox::unique_suffix());
    secrets_manager::create_secret(
        &w.secrets_manager,
        &other,
        &json!({"environmentUrl": "https://abc12345.live.dynatrace.com", "token": fake_token('K')})
            .to_string(),
    )
    .await
    .unwrap();
    w.deps.config.manager_secret_ids.push(other);
    let token = w
        .emu
        .seed_token(dynatrace_emulator::SeedToken::new("x", &["metrics.read"]));
    let port = w.emu.local_addr().port();
    for url in [
        "https://abc12345.live.dynatrace.com.evil.example".to_owned(),
        "https://abc12345-live.dynatrace.com".to_owned(),
        "https://abc12345.live.dynatrace.co".to_owned(),
        "https://abc12345.live.dynatrace.com:8443".to_owned(),
        "https://abc12345.live.dynatrace.com/e/other".to_owned(),
        "https://\u{0430}bc12345.live.dynatrace.com".to_owned(), // Cyrillic а
        "https://abc12345.live.dynatrace.com\u{3002}evil.example".to_owned(), // ideographic dot
        "https://abcl2345.live.dynatrace.com".to_owned(),
        format!("http://localhost:{port}"),
        format!("http://127.0.0.2:{port}"),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        format!("https://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}/e/tenant"),
    ] {
        let doc = json!({"environmentUrl": url, "token": token.value}).to_string();
        refused_document(&w, &doc, "EnvironmentMismatch").await;
    }
    assert!(w.emu.requests().is_empty(), "{:?}", w.emu.requests());
    w.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------
// hostile servers

#[tokio::test]
async fn redirect_to_another_host_carries_no_credentials() {
    let w = World::new(&[]).await;
    let elsewhere = always(fixed(200, "application/json", b"{}".to_vec()));
    for (method, path) in [
        ("POST", "/api/v2/apiTokens/lookup"),
        ("POST", "/api/v2/apiTokens"),
    ] {
        let (secret, _) = w.app_secret(json!({})).await;
        let current =
            secrets_manager::value_at(&w.secrets_manager, &secret, secrets_manager::AWSCURRENT)
                .await
                .unwrap()
                .unwrap();
        let version = w.begin(&secret).await;
        w.emu.clear_faults();
        w.emu.add_fault(FaultRule::new(
            method,
            PathMatch::Exact(path.into()),
            FaultKind::Redirect {
                location: format!("{}{path}", elsewhere.url()),
            },
        ));
        let msg = expect_err(
            w.step(&secret, &version, "createSecret").await,
            "DynatraceRedirect",
        );
        assert!(msg.contains("redirect"), "{msg}");
        assert_untouched(&w, &secret, &version, &current).await;
    }
    w.emu.clear_faults();
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect was followed: {:?}",
        elsewhere.requests()
    );
    w.assert_no_leaks();
}

#[tokio::test]
async fn vault_redirect_is_not_followed() {
    let elsewhere = always(fixed(200, "application/json", b"{}".to_vec()));
    let location = format!("{}/v1/secret/data/x", elsewhere.url());
    let vault = always(Reply::new(307).header("Location", location));
    let vault_token = "s.StubVaultTokenNeverLogMe0123";
    let (guard, logs) = LogCapture::install_with_filter(&logging::directives("trace"));
    let deps = vault_deps(&vault.url(), vault_token);
    let e = app::handle(
        &deps,
        json!({"action": "rotate-vault", "paths": ["dynatrace/app1"]}),
        Deadline::after(Duration::from_secs(20)),
    )
    .await
    .unwrap_err();
    drop(guard);
    assert!(e.message.to_lowercase().contains("redirect"), "{e}");
    assert!(!vault.requests().is_empty());
    assert!(
        elsewhere.requests().is_empty(),
        "followed: {:?}",
        elsewhere.requests()
    );
    assert!(!logs.text().contains(vault_token) && !format!("{e:?}").contains(vault_token));
}

#[tokio::test]
async fn huge_and_malformed_bodies_from_dynatrace() {
    let huge_garbage: Vec<u8> = std::iter::repeat_n(b'[', 6 * 1024 * 1024).collect();
    let mut huge_string = br#"{"id":"dt0c01.AAAAAAAAAAAAAAAAAAAAAAAA","name":""#.to_vec();
    huge_string.extend(std::iter::repeat_n(b'x', 6 * 1024 * 1024));
    let cases: Vec<(Reply, &[&str])> = vec![
        (
            fixed(200, "application/json", huge_garbage.clone()),
            &["DynatraceProtocolError"],
        ),
        (
            fixed(200, "application/json", huge_string),
            &["DynatraceProtocolError"],
        ),
        (
            fixed(
                200,
                "application/json",
                b"{\"id\": 1, \"scopes\": \"all\"}".to_vec(),
            ),
            &["DynatraceProtocolError"],
        ),
        (
            fixed(200, "application/json", b"\xff\xfe\x00garbage".to_vec()),
            &["DynatraceProtocolError"],
        ),
        (
            fixed(200, "application/json", b"".to_vec()),
            &["DynatraceProtocolError"],
        ),
        (
            fixed(200, "application/json", b"[]".to_vec()),
            &["DynatraceProtocolError"],
        ),
        (
            fixed(200, "text/html", b"<html>login</html>".to_vec()),
            &["DynatraceProtocolError"],
        ),
        (
            // larger than the 4 MiB cap: refused before it is read whole
            fixed(403, "application/json", huge_garbage),
            &["DynatraceForbidden", "DynatraceProtocolError"],
        ),
        (
            fixed(500, "application/json", b"{\"error\":".to_vec()),
            &["DynatraceUnavailable"],
        ),
        (
            fixed(418, "application/json", b"null".to_vec()),
            &["DynatraceProtocolError"],
        ),
    ];
    for (answer, types) in cases {
        let stub = always(answer);
        let w = StubDtWorld::new(&stub).await;
        let e = w.create().await.unwrap_err();
        assert!(types.contains(&e.error_type), "{e}");
        assert!(
            e.message.len() < 2000,
            "the body is not echoed: {} bytes",
            e.message.len()
        );
        assert!(!stub.requests().is_empty());
        assert!(
            !stub.requests().iter().any(is_mint),
            "no mint after a bad answer"
        );
        w.assert_clean(&format!("{e} {e:?}")).await;
    }
}

#[tokio::test]
async fn dynatrace_error_body_echoing_a_token_is_redacted() {
    // The stub echoes the request body (which carries the looked-up token) and the
    // Authorization header inside its error message.
    let answer = |req: &Recorded, status: u16| {
        let auth = req.header("authorization").unwrap_or("").to_owned();
        let body = json!({"error": {"code": 400, "message": format!("bad token {auth}"),
            "constraintViolations": [{"path": "token", "message": format!("{auth} is not allowed; was {}", auth.trim_start_matches("Api-Token "))}]}});
        Reply::json(status, &body.to_string())
    };
    for status in [400u16, 403, 503] {
        let stub = StubServer::start(move |req, _| answer(req, status));
        let w = StubDtWorld::new(&stub).await;
        let e = w.create().await.unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(
            shown.contains(".<redacted>") || status == 503 && shown.contains("redacted"),
            "{status}: {shown}"
        );
        assert!(
            !shown.contains(&w.manager_value),
            "{status}: manager token echoed"
        );
        w.assert_clean(&shown).await;
    }
}

#[tokio::test]
async fn huge_and_malformed_bodies_from_vault() {
    let vault_token = "s.StubVaultTokenNeverLogMe4567";
    let huge: Vec<u8> = std::iter::repeat_n(b'{', 6 * 1024 * 1024).collect();
    let mut huge_valid = br#"{"data":{"keys":[""#.to_vec();
    huge_valid.extend(std::iter::repeat_n(b'k', 6 * 1024 * 1024));
    huge_valid.extend(br#""]}}"#);
    for body in [
        huge,
        huge_valid,
        b"not json".to_vec(),
        b"{\"data\": 5}".to_vec(),
        b"{\"errors\": [\"s.StubVaultTokenNeverLogMe4567 denied\"]}".to_vec(),
        b"\xff\xfe".to_vec(),
        Vec::new(),
    ] {
        for status in [200u16, 400, 500] {
            let stub = always(fixed(status, "application/json", body.clone()));
            let (guard, logs) = LogCapture::install_with_filter(&logging::directives("trace"));
            let deps = vault_deps(&stub.url(), vault_token);
            let r = app::handle(
                &deps,
                json!({"action": "rotate-vault", "paths": ["dynatrace/app1"]}),
                Deadline::after(Duration::from_secs(20)),
            )
            .await;
            drop(guard);
            let shown = match &r {
                Ok(v) => v.to_string(),
                Err(e) => format!("{e} {e:?}"),
            };
            // Nothing could run against such a server: an error (not a summary).
            let e = r.expect_err("a hostile Vault cannot look like a successful run");
            assert!(
                [
                    "VaultError",
                    "ConfigError",
                    "VaultLoginFailed",
                    "VaultTokenExpired",
                    "ManagerUnusable",
                    "VaultPermissionDenied"
                ]
                .contains(&e.error_type),
                "{status}: {shown}"
            );
            assert!(
                shown.len() < 4000,
                "{status}: body echoed ({} bytes)",
                shown.len()
            );
            assert!(
                !shown.contains(vault_token) && !logs.text().contains(vault_token),
                "{status}: the Vault token leaked: {shown}"
            );
            assert!(
                stub.requests()
                    .iter()
                    .all(|r| r.method != "POST" && r.method != "PUT"),
                "nothing written: {:?}",
                stub.requests()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// rotate-vault paths

#[tokio::test]
async fn rotate_vault_refuses_hostile_paths_and_a_root_prefix() {
    let w = VaultWorld::new(&[]).await;
    let (app, token) = w.app("app1", json!({})).await;
    let before = w.read(&app).await.0;
    let bad_paths = [
        format!("{}/../../sys/mounts", w.root),
        "..".to_owned(),
        format!("{}/dynatrace/./app1", w.root),
        format!("{}/%2e%2e/%2E%2E/app1", w.root),
        format!("{}/dynatrace/app1\u{0}", w.root),
        format!("{}/dynatrace/app1\r\nX-Evil: 1", w.root),
        format!("{}/dynatrace/app1?version=1", w.root),
        format!("{}/dynatrace/app1#x", w.root),
        format!("{}//dynatrace/app1", w.root),
        "x".repeat(600),
        "/".to_owned(),
        String::new(),
    ];
    for p in &bad_paths {
        let e = expect_err(
            w.invoke(json!({"action": "rotate-vault", "paths": [p]}))
                .await,
            "MalformedEvent",
        );
        assert!(e.contains("invalid path"), "{p:?}: {e}");
    }
    // one bad path among good ones refuses the whole action: nothing runs
    expect_err(
        w.invoke(json!({"action": "rotate-vault", "paths": [app.clone(), ".."]}))
            .await,
        "MalformedEvent",
    );
    for prefix in ["/", "", "  ", "//", "../", "%2e%2e/", "a/../"] {
        let e = expect_err(
            w.invoke(json!({"action": "rotate-vault", "prefix": prefix}))
                .await,
            "MalformedEvent",
        );
        assert!(e.contains("invalid path"), "{prefix:?}: {e}");
    }
    // types
    for v in [
        json!({"action": "rotate-vault", "paths": "a"}),
        json!({"action": "rotate-vault", "paths": [1]}),
        json!({"action": "rotate-vault", "prefix": ["a"]}),
        json!({"action": "rotate-vault", "force": "yes"}),
    ] {
        expect_err(w.invoke(v).await, "MalformedEvent");
    }
    assert_eq!(w.read(&app).await.0, before, "no version written");
    assert!(w.live_minted().is_empty(), "nothing minted");
    assert!(w.token(&token.id).enabled);
    w.assert_no_leaks();
}

// ---------------------------------------------------------------------------------------
// secret hygiene across everything

#[tokio::test]
async fn no_secret_reaches_any_log_line_error_or_response() {
    // Secrets Manager: one rotation that succeeds and one that fails (forbidden scopes).
    let w = World::new(&[]).await;
    let (ok_secret, _) = w.app_secret(json!({"team": "payments"})).await;
    w.rotate(&ok_secret).await;
    let strong = w.emu.seed_token(dynatrace_emulator::SeedToken::new(
        "strong",
        &["metrics.read", "apiTokens.write"],
    ));
    let bad_secret = w
        .secret_with(&json!({"environmentUrl": w.emu.url(), "token": strong.value}).to_string())
        .await;
    let version = w.begin(&bad_secret).await;
    w.step(&bad_secret, &version, "createSecret")
        .await
        .unwrap_err();
    // bad input carrying the RotationToken
    let _ = w
        .invoke(
            json!({"Step": "createSecret", "SecretId": ok_secret, "RotationToken": ROTATION_TOKEN}),
        )
        .await;
    let _ = w
        .invoke(json!({"Step": "nope", "SecretId": ROTATION_TOKEN, "ClientRequestToken": "v", "RotationToken": ROTATION_TOKEN}))
        .await;
    let _ = w
        .invoke(json!({"action": "rotate-vault", "paths": [ROTATION_TOKEN], "x": ROTATION_TOKEN}))
        .await;

    // Vault with AppRole: a rotation, a dry run and a failing path.
    let bao = rotator_sandbox::Bao::shared();
    let (role_id, secret_id) = bao.approle_for("secret").await.unwrap();
    let vw = VaultWorld::new(&[
        ("VAULT_AUTH_METHOD", "approle"),
        ("VAULT_ROLE_ID", &role_id),
        ("VAULT_SECRET_ID", &secret_id),
    ])
    .await;
    let (p1, _) = vw.app("hyg1", json!({"owner": "x"})).await;
    let out = vw.rotate(&[&p1], true, false).await;
    assert_eq!(out["rotated"], 1, "{out}");
    vw.rotate(&[&p1], true, true).await;
    let broken = vw.path("broken");
    bao.kv_put(
        "secret",
        &broken,
        &json!({"token": format!("{}\r\n", fake_token('B'))}),
    )
    .await
    .unwrap();
    let out = vw.rotate(&[&broken], true, false).await;
    assert_eq!(out["failed"], 1, "{out}");
    let _ = vw
        .invoke(json!({"action": "rotate-vault", "paths": [".."], "RotationToken": ROTATION_TOKEN}))
        .await;

    // One haystack: every log line of both captures, every error and response.
    let mut hay = w.logs.text() + &vw.logs.text();
    for o in w.outputs.borrow().iter().chain(vw.outputs.borrow().iter()) {
        hay.push_str(o);
    }
    let mut secrets: Vec<String> = w.emu.issued_values();
    secrets.extend(vw.emu.issued_values());
    secrets.extend(vw.secrets.iter().cloned());
    secrets.push(secret_id.clone());
    secrets.push(bao.root_token().to_owned());
    secrets.push(ROTATION_TOKEN.to_owned());
    secrets.push(fake_token('B'));
    for s in &secrets {
        assert!(!hay.contains(s.as_str()), "a secret value leaked");
        if let Some(part) = s.rsplit('.').next().filter(|p| p.len() >= 20) {
            assert!(!hay.contains(part), "a secret part leaked");
        }
    }
    // No Vault client token (issued by the AppRole login, unknown to the test) either:
    // nothing shaped like one (`s.`/`hvs.` + 20+ characters).
    for marker in ["\"s.", " s.", "hvs.", "hvb.", "b."] {
        for (i, _) in hay.match_indices(marker) {
            let rest: String = hay[i + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(
                rest.len() < 20,
                "something like a Vault token in the logs: {marker}{rest}"
            );
        }
    }
    assert!(
        w.logs.lines().len() > 5 && vw.logs.lines().len() > 5,
        "logs were captured"
    );
    w.assert_no_leaks();
    vw.assert_no_leaks();
}
