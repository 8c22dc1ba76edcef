//! The Secrets Manager rotation, end to end against `moto_server` and the Dynatrace
//! emulator: the handler is called with each step the way Secrets Manager calls it, and
//! the invariants of docs/design.md §3 are checked on the emulator's tokens and the secret's
//! versions after every scenario.

mod support;

use rotator_sandbox::secrets_manager::{self, STEPS};
use serde_json::{Value, json};
use support::{APP_SCOPES, World};

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn full_rotation_replaces_the_token_and_keeps_the_old_one_for_overlap() {
    let w = World::new(&[]).await;
    let (secret, original) = w
        .app_secret(json!({"team": "payments", "nested": {"keep": [1, 2]}}))
        .await;
    let old_version =
        secrets_manager::version_with(&w.secrets_manager, &secret, secrets_manager::AWSCURRENT)
            .await
            .unwrap()
            .unwrap();
    let version = w.rotate(&secret).await;

    let stages = w.stages(&secret).await;
    assert_eq!(
        stages[&version],
        vec!["AWSCURRENT"],
        "AWSPENDING removed, AWSCURRENT moved: {stages:?}"
    );
    assert_eq!(stages[&old_version], vec!["AWSPREVIOUS"]);

    let doc = w.doc(&secret, secrets_manager::AWSCURRENT).await.unwrap();
    let new_id = doc["tokenId"].as_str().unwrap().to_owned();
    assert_ne!(new_id, original.id);
    assert_eq!(doc["previousTokenId"], original.id.as_str());
    assert_eq!(doc["team"], "payments");
    assert_eq!(doc["nested"]["keep"][1], 2);
    assert_eq!(doc["environmentUrl"], w.emu.url().as_str());
    assert!(doc["rotatedAt"].as_str().unwrap().ends_with('Z'));
    assert!(doc["token"].as_str().unwrap().starts_with(&new_id));

    let new = w.token(&new_id);
    assert!(new.enabled);
    assert_eq!(
        sorted(&new.scopes.iter().map(String::as_str).collect::<Vec<_>>()),
        sorted(APP_SCOPES)
    );
    assert!(new.name.starts_with("app1 metrics [dtr:"), "{}", new.name);
    assert!(
        w.token(&original.id).enabled,
        "the old token stays valid until the next rotation"
    );
    assert_eq!(w.minted().len(), 1);
    w.assert_invariants(&secret).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn every_step_twice_gives_the_same_end_state_and_one_mint() {
    let w = World::new(&[]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    let version = w.begin(&secret).await;
    for step in STEPS {
        let first = w
            .step(&secret, &version, step)
            .await
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        let second = w
            .step(&secret, &version, step)
            .await
            .unwrap_or_else(|e| panic!("{step} again: {e}"));
        assert_eq!(
            first["tokenId"], second["tokenId"],
            "{step}: {first} vs {second}"
        );
    }
    assert_eq!(w.minted().len(), 1, "exactly one token minted");
    assert!(w.token(&original.id).enabled);
    assert_eq!(w.stages(&secret).await[&version], vec!["AWSCURRENT"]);
    w.assert_invariants(&secret).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn two_rotations_disable_the_original_and_keep_the_first_successor() {
    let w = World::new(&[]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    let first = w
        .token_id_at(&secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    w.rotate(&secret).await;
    let second = w
        .token_id_at(&secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    assert_ne!(first, second);

    let orig = w.token(&original.id);
    assert!(!orig.enabled, "the token two generations old is disabled");
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date();
    assert!(
        orig.name.ends_with(&format!("[disabled {today}]")),
        "{}",
        orig.name
    );
    assert!(w.token(&first).enabled, "AWSPREVIOUS stays valid");
    assert!(w.token(&second).enabled);
    assert_eq!(
        w.token_id_at(&secret, secrets_manager::AWSPREVIOUS)
            .await
            .unwrap(),
        first
    );
    w.assert_invariants(&secret).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn revoke_immediately_with_delete_removes_the_old_token_at_finish() {
    let w = World::new(&[
        ("DT_REVOKE_OLD", "immediately"),
        ("DT_OLD_TOKEN_ACTION", "delete"),
    ])
    .await;
    let (secret, original) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    assert!(w.emu.was_deleted(&original.id));
    let current = w
        .token_id_at(&secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    assert!(w.token(&current).enabled);
    w.assert_no_leaks();
}

#[tokio::test]
async fn revoke_never_keeps_every_old_token() {
    let w = World::new(&[("DT_REVOKE_OLD", "never")]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    w.rotate(&secret).await;
    assert!(w.token(&original.id).enabled);
    assert_eq!(w.live_minted().len(), 2);
    w.assert_no_leaks();
}

#[tokio::test]
async fn lifetime_policy_sets_the_expiry_and_events_are_posted() {
    let w = World::new(&[
        ("DT_TOKEN_LIFETIME_DAYS", "10"),
        ("ROTATION_INTERVAL_DAYS", "3"),
        ("DT_EVENTS", "on"),
    ])
    .await;
    let (secret, _) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    let id = w
        .token_id_at(&secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    let exp = w.token(&id).expiration.expect("an expiry");
    let days = (exp.as_second() - jiff::Timestamp::now().as_second()) as f64 / 86400.0;
    assert!((9.9..=10.01).contains(&days), "{days}");
    let events = w.emu.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["eventType"], "CUSTOM_INFO");
    assert_eq!(events[0]["properties"]["rotation.newTokenId"], id.as_str());
    w.assert_no_leaks();
}

#[tokio::test]
async fn bare_string_secret_is_rotated_as_a_bare_string() {
    let w = World::new(&[]).await;
    let token = w.emu.seed_token(dynatrace_emulator::SeedToken::new(
        "bare",
        &["metrics.read"],
    ));
    let secret = w.secret_with(&token.value).await;
    w.rotate(&secret).await;
    let value = secrets_manager::value_at(&w.secrets_manager, &secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap()
        .unwrap();
    assert!(value.starts_with("dt0c01.") && !value.contains('{'));
    assert_ne!(value, token.value);
    w.assert_invariants(&secret).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn no_longer_grantable_scopes_are_dropped() {
    let w = World::new(&[]).await;
    let token = w.emu.seed_token(dynatrace_emulator::SeedToken::new(
        "old",
        &["metrics.read", "ViewDashboard"],
    ));
    let secret = w
        .secret_with(&json!({"token": token.value}).to_string())
        .await;
    w.rotate(&secret).await;
    let id = w
        .token_id_at(&secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    assert_eq!(w.token(&id).scopes, vec!["metrics.read".to_string()]);
    assert!(w.logs.text().contains("no longer grants"));
    w.assert_no_leaks();
}

#[tokio::test]
async fn set_secret_re_enables_a_disabled_pending_token() {
    let w = World::new(&[]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    let version = w.begin(&secret).await;
    let created = w.step(&secret, &version, "createSecret").await.unwrap();
    let id = created["tokenId"].as_str().unwrap().to_owned();
    // someone disables the pending token between the steps
    w.edit_by_hand(&id, json!({"enabled": false})).await;
    w.step(&secret, &version, "setSecret").await.unwrap();
    assert!(w.token(&id).enabled);
    w.step(&secret, &version, "testSecret").await.unwrap();
    w.step(&secret, &version, "finishSecret").await.unwrap();
    w.assert_invariants(&secret).await;
}

#[tokio::test]
async fn a_pending_token_that_vanished_is_a_clear_error() {
    let w = World::new(&[]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    let version = w.begin(&secret).await;
    let created = w.step(&secret, &version, "createSecret").await.unwrap();
    let id = created["tokenId"].as_str().unwrap().to_owned();
    reqwest::Client::new()
        .delete(format!("{}/api/v2/apiTokens/{id}", w.emu.url()))
        .header("Authorization", format!("Api-Token {}", w.manager.value))
        .send()
        .await
        .unwrap();
    let err = w.step(&secret, &version, "setSecret").await.unwrap_err();
    assert_eq!(err.error_type, "PendingTokenVanished");
    assert!(err.message.contains(&id), "{}", err.message);
    w.assert_no_leaks();
}

#[tokio::test]
async fn test_secret_without_a_pending_value_checks_the_configuration() {
    // Enabling rotation with RotateImmediately=false runs testSecret alone.
    let w = World::new(&[]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    let version = w.begin(&secret).await;
    let out = w.step(&secret, &version, "testSecret").await.unwrap();
    assert_eq!(out["status"], "configuration-ok");
    assert!(w.minted().is_empty());
}

#[tokio::test]
async fn rotation_token_is_forwarded_but_never_returned() {
    let w = World::new(&[]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    let version = w.begin(&secret).await;
    let out = w.step(&secret, &version, "createSecret").await.unwrap();
    assert!(!out.to_string().contains(support::ROTATION_TOKEN));
    assert_eq!(out["status"], "created");
    w.assert_no_leaks();
}

/// Every bad input: a clear error type, nothing minted, no version written.
#[tokio::test]
async fn bad_input_is_refused_without_any_change() {
    let w = World::new(&[]).await;
    let (good, _) = w.app_secret(json!({})).await;
    let good_version = w.begin(&good).await;

    async fn check(w: &World, secret: Option<&str>, payload: Value, want: &str) {
        let before_tokens = w.emu.issued_values().len();
        let before_stages = match secret {
            Some(s) => Some(w.stages(s).await),
            None => None,
        };
        let err = w
            .invoke(payload.clone())
            .await
            .expect_err(&format!("{payload} must fail"));
        assert_eq!(err.error_type, want, "{payload}: {}", err.message);
        assert!(!err.message.is_empty());
        assert_eq!(
            w.emu.issued_values().len(),
            before_tokens,
            "{want}: a token was minted"
        );
        if let (Some(s), Some(before)) = (secret, before_stages) {
            assert_eq!(w.stages(s).await, before, "{want}: a version was written");
        }
    }
    let step = |secret: &str, version: &str, step: &str| json!({"Step": step, "SecretId": secret, "ClientRequestToken": version});

    check(&w, None, json!({"Step": "createSecret"}), "MalformedEvent").await;
    check(&w, None, json!("just a string"), "MalformedEvent").await;
    check(
        &w,
        None,
        json!({"Step": 3, "SecretId": "x", "ClientRequestToken": "y"}),
        "MalformedEvent",
    )
    .await;
    check(
        &w,
        Some(&good),
        step(&good, &good_version, "rotateSecret"),
        "UnknownStep",
    )
    .await;
    check(
        &w,
        None,
        step("dynatrace/does-not-exist", "v1", "createSecret"),
        "SecretNotFound",
    )
    .await;
    check(
        &w,
        Some(&good),
        step(&good, "not-a-version", "createSecret"),
        "VersionNotFound",
    )
    .await;

    // rotation disabled
    let (disabled, _) = w.app_secret(json!({})).await;
    let v = w.begin(&disabled).await;
    secrets_manager::cancel_rotation(&w.secrets_manager, &disabled)
        .await
        .unwrap();
    check(
        &w,
        Some(&disabled),
        step(&disabled, &v, "createSecret"),
        "RotationNotEnabled",
    )
    .await;

    // a version that is neither current nor pending: the previous one after a rotation
    let (rotated, _) = w.app_secret(json!({})).await;
    let old =
        secrets_manager::version_with(&w.secrets_manager, &rotated, secrets_manager::AWSCURRENT)
            .await
            .unwrap()
            .unwrap();
    w.rotate(&rotated).await;
    check(
        &w,
        Some(&rotated),
        step(&rotated, &old, "createSecret"),
        "VersionNotPending",
    )
    .await;

    let url = w.emu.url();
    let token = w
        .emu
        .seed_token(dynatrace_emulator::SeedToken::new("x", &["metrics.read"]));
    let cases: Vec<(String, &str)> = vec![
        ("this is neither json nor a token".into(), "InvalidSecretDocument"),
        (json!({"token": "dt0c01.TOO.SHORT"}).to_string(), "InvalidSecretDocument"),
        (json!({"token": 42}).to_string(), "InvalidSecretDocument"),
        (json!({"environmentUrl": url, "tok": token.value}).to_string(), "InvalidSecretDocument"),
        (json!({"environmentUrl": "https://other.live.dynatrace.com", "token": token.value}).to_string(), "EnvironmentMismatch"),
        (json!({"environmentUrl": "http://abc.live.dynatrace.com", "token": token.value}).to_string(), "InvalidEnvironmentUrl"),
        (json!({"environmentUrl": url, "token": "dt0c01.AAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}).to_string(), "CurrentTokenUnknown"),
    ];
    for (value, want) in cases {
        let s = w.secret_with(&value).await;
        let v = w.begin(&s).await;
        check(&w, Some(&s), step(&s, &v, "createSecret"), want).await;
    }

    // forbidden scopes on the token to rotate
    let admin = w.emu.seed_token(dynatrace_emulator::SeedToken::new(
        "admin",
        &["apiTokens.write", "metrics.read"],
    ));
    let s = w
        .secret_with(&json!({"token": admin.value}).to_string())
        .await;
    let v = w.begin(&s).await;
    check(
        &w,
        Some(&s),
        step(&s, &v, "createSecret"),
        "ForbiddenScopes",
    )
    .await;

    // a manager token lacking apiTokens.write
    let weak = w.emu.seed_token(dynatrace_emulator::SeedToken::new(
        "weak manager",
        &["apiTokens.read"],
    ));
    let weak_secret = w
        .secret_with(&json!({"environmentUrl": w.emu.url(), "token": weak.value}).to_string())
        .await;
    let mut weak_world_cfg = w.deps.config.clone();
    weak_world_cfg.manager_secret_ids = vec![weak_secret];
    let deps = dynatrace_token_rotator::app::Deps {
        config: weak_world_cfg,
        secrets_manager: w.secrets_manager.clone(),
        sqs: w.deps.sqs.clone(),
        dynatrace: dynatrace_token_rotator::dynatrace::Dynatrace::new(support::fast_retries())
            .unwrap(),
        vault: None,
    };
    let (s, _) = w.app_secret(json!({})).await;
    let v = w.begin(&s).await;
    let before = w.stages(&s).await;
    let n = w.emu.issued_values().len();
    let err = dynatrace_token_rotator::app::handle(
        &deps,
        step(&s, &v, "createSecret"),
        dynatrace_token_rotator::deadline::Deadline::none(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type, "DynatraceForbidden", "{}", err.message);
    assert!(err.message.contains("apiTokens.write"), "{}", err.message);
    w.outputs.borrow_mut().push(err.to_string());
    assert_eq!(w.emu.issued_values().len(), n);
    // A create that failed leaves the write-ahead label (finishSecret then looks for what the
    // attempt may have minted); no version was written.
    let mut after = w.stages(&s).await;
    for labels in after.values_mut() {
        labels.retain(|l| l != dynatrace_token_rotator::secrets_manager::MINTING);
    }
    assert_eq!(after, before);
    w.assert_no_leaks();
}

/// Records the `RotationToken` of every `PutSecretValue` the rotator sends (moto ignores
/// the parameter, so the request itself is inspected).
#[derive(Debug, Default)]
struct RotationTokens(std::sync::Mutex<Vec<Option<String>>>);

#[derive(Debug)]
struct SeeRotationToken(std::sync::Arc<RotationTokens>);

impl aws_sdk_secretsmanager::config::Intercept for SeeRotationToken {
    fn name(&self) -> &'static str {
        "see-rotation-token"
    }
    fn read_before_serialization(
        &self,
        ctx: &aws_sdk_secretsmanager::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _: &aws_sdk_secretsmanager::config::RuntimeComponents,
        _: &mut aws_sdk_secretsmanager::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(put) = ctx
            .input()
            .downcast_ref::<aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueInput>()
        {
            self.0.0.lock().unwrap().push(put.rotation_token().map(str::to_owned));
        }
        Ok(())
    }
}

#[tokio::test]
async fn rotation_token_reaches_put_secret_value_and_only_when_given() {
    let mut w = World::new(&[]).await;
    let seen = std::sync::Arc::new(RotationTokens::default());
    let conf = w
        .secrets_manager
        .config()
        .to_builder()
        .interceptor(SeeRotationToken(seen.clone()))
        .build();
    w.deps.secrets_manager = aws_sdk_secretsmanager::Client::from_conf(conf);
    let (secret, _) = w.app_secret(json!({})).await;
    let version = w.begin(&secret).await;
    w.step(&secret, &version, "createSecret").await.unwrap();
    assert_eq!(
        *seen.0.lock().unwrap(),
        vec![Some(support::ROTATION_TOKEN.to_owned())]
    );

    let (other, _) = w.app_secret(json!({})).await;
    let v = w.begin(&other).await;
    w.invoke(json!({"Step": "createSecret", "SecretId": other, "ClientRequestToken": v}))
        .await
        .unwrap();
    assert_eq!(
        seen.0.lock().unwrap().last().cloned(),
        Some(None),
        "no RotationToken in the event: none sent"
    );
    w.assert_no_leaks();
}

#[tokio::test]
async fn environment_url_may_be_omitted_with_one_manager_but_not_with_several() {
    let w = World::new(&[]).await;
    let token = w.emu.seed_token(dynatrace_emulator::SeedToken::new(
        "no env",
        &["metrics.read"],
    ));
    let secret = w
        .secret_with(&json!({"token": token.value}).to_string())
        .await;
    w.rotate(&secret).await;
    let doc = w.doc(&secret, secrets_manager::AWSCURRENT).await.unwrap();
    assert!(doc.get("environmentUrl").is_none(), "not added: {doc}");
    w.assert_invariants(&secret).await;

    // a second manager (another environment) makes the secret ambiguous
    let other = w.secret_with(&json!({"environmentUrl": "https://other.live.dynatrace.com", "token": w.manager.value}).to_string()).await;
    let mut config = w.deps.config.clone();
    config.manager_secret_ids.push(other);
    let deps = dynatrace_token_rotator::app::Deps {
        config,
        secrets_manager: w.secrets_manager.clone(),
        sqs: w.deps.sqs.clone(),
        dynatrace: dynatrace_token_rotator::dynatrace::Dynatrace::new(support::fast_retries())
            .unwrap(),
        vault: None,
    };
    let v = w.begin(&secret).await;
    let before = w.emu.issued_values().len();
    let ev = json!({"Step": "createSecret", "SecretId": secret, "ClientRequestToken": v});
    let err = dynatrace_token_rotator::app::handle(
        &deps,
        ev,
        dynatrace_token_rotator::deadline::Deadline::none(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type, "AmbiguousEnvironment", "{}", err.message);
    assert_eq!(w.emu.issued_values().len(), before, "nothing minted");
}

#[tokio::test]
async fn a_legacy_token_is_rotated_through_its_lookup() {
    let w = World::new(&[]).await;
    let legacy = w.emu.seed_token(dynatrace_emulator::SeedToken {
        legacy: true,
        ..dynatrace_emulator::SeedToken::new("legacy app", &["metrics.read", "DataExport"])
    });
    assert!(
        !legacy.value.contains('.'),
        "the emulator seeded an opaque token"
    );
    let secret = w
        .secret_with(&json!({"environmentUrl": w.emu.url(), "token": legacy.value}).to_string())
        .await;
    w.rotate(&secret).await;
    let doc = w.doc(&secret, secrets_manager::AWSCURRENT).await.unwrap();
    assert_eq!(
        doc["previousTokenId"],
        legacy.id.as_str(),
        "the legacy token's id came from the lookup"
    );
    let new_id = doc["tokenId"].as_str().unwrap();
    assert!(
        doc["token"].as_str().unwrap().starts_with(new_id),
        "minted tokens are current-format"
    );
    assert_eq!(
        sorted(
            &w.token(new_id)
                .scopes
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        ),
        sorted(&["DataExport", "metrics.read"])
    );
    // a second rotation revokes the legacy token (two generations old) by its id
    w.rotate(&secret).await;
    assert!(!w.token(&legacy.id).enabled);
    w.assert_no_leaks();
}

#[tokio::test]
async fn without_a_lifetime_policy_the_old_lifetime_is_kept() {
    let w = World::new(&[]).await;
    let created: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let expires: jiff::Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
    let token = w.emu.seed_token(dynatrace_emulator::SeedToken {
        creation: Some(created),
        expiration: Some(expires),
        ..dynatrace_emulator::SeedToken::new("yearly", &["metrics.read"])
    });
    let secret = w
        .secret_with(&json!({"token": token.value}).to_string())
        .await;
    w.rotate(&secret).await;
    let id = w
        .token_id_at(&secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    let exp = w
        .token(&id)
        .expiration
        .expect("the new token expires like the old one");
    let days = (exp.as_second() - jiff::Timestamp::now().as_second()) as f64 / 86400.0;
    assert!(
        (364.9..=365.01).contains(&days),
        "lifetime kept: {days} days"
    );

    // a token that never expired gets a successor that never expires
    let (forever, _) = w.app_secret(json!({})).await;
    w.rotate(&forever).await;
    let id = w
        .token_id_at(&forever, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    assert_eq!(w.token(&id).expiration, None);
}

#[tokio::test]
async fn delete_action_under_next_rotation_deletes_the_token_two_generations_old() {
    let w = World::new(&[("DT_OLD_TOKEN_ACTION", "delete")]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    let first = w
        .token_id_at(&secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    assert!(
        w.token(&original.id).enabled,
        "overlap: kept after one rotation"
    );
    w.rotate(&secret).await;
    assert!(w.emu.was_deleted(&original.id));
    assert!(w.token(&first).enabled);
    let doc = w.doc(&secret, secrets_manager::AWSCURRENT).await.unwrap();
    assert_eq!(doc["previousTokenId"], first.as_str());
    w.assert_invariants(&secret).await;
}

/// The Dynatrace calls of one Secrets Manager rotation that has a previous token to revoke,
/// each with its purpose: eight, and both proofs among them (the new token authenticates
/// itself, in createSecret and again in testSecret; the revoked token is proven by value).
/// No tenant-wide listing unless an attempt may have left a token behind.
#[tokio::test]
async fn a_rotation_makes_eight_dynatrace_calls() {
    let w = World::new(&[]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    let before = w.emu.requests().len();
    w.rotate(&secret).await;
    let calls: Vec<(String, String)> = w.emu.requests()[before..]
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let lookup = ("POST".to_owned(), "/api/v2/apiTokens/lookup".to_owned());
    let create = ("POST".to_owned(), "/api/v2/apiTokens".to_owned());
    let disable = (
        "PUT".to_owned(),
        format!("/api/v2/apiTokens/{}", original.id),
    );
    assert_eq!(
        calls,
        vec![
            lookup.clone(), // createSecret: the current token by value (scopes, expiry)
            create,         // createSecret: mint
            lookup.clone(), // createSecret: the new token proves itself
            lookup.clone(), // setSecret: the pending token by value (exists, enabled)
            lookup.clone(), // testSecret: the current token by value (the intended scopes)
            lookup.clone(), // testSecret: the pending token proves itself again
            lookup,         // finishSecret: AWSPREVIOUS by value (the revocation's proof)
            disable,        // finishSecret: disable and rename the token two generations old
        ],
    );
    assert!(!w.token(&original.id).enabled);
    w.assert_invariants(&secret).await;
    let stages = w.stages(&secret).await;
    assert!(
        !stages
            .values()
            .flatten()
            .any(|l| l == dynatrace_token_rotator::secrets_manager::MINTING),
        "no write-ahead label is left: {stages:?}"
    );
}

/// A pending token whose scopes were edited after createSecret is restored to the intended
/// scopes (the current token's, read by value in testSecret) and proven again, so the
/// rotation does not stay stuck.
#[tokio::test]
async fn pending_scopes_edited_mid_rotation_are_restored_and_proven() {
    let w = World::new(&[]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    let version = w.begin(&secret).await;
    w.step(&secret, &version, "createSecret").await.unwrap();
    w.step(&secret, &version, "setSecret").await.unwrap();
    let pending = w
        .token_id_at(&secret, secrets_manager::AWSPENDING)
        .await
        .unwrap();
    w.edit_by_hand(&pending, json!({"scopes": ["metrics.read"]}))
        .await;
    w.step(&secret, &version, "testSecret").await.unwrap();
    let mut restored = w.token(&pending).scopes;
    restored.sort();
    let mut intended = w.token(&original.id).scopes;
    intended.sort();
    assert_eq!(restored, intended);
    w.step(&secret, &version, "finishSecret").await.unwrap();
    w.assert_invariants(&secret).await;
    w.assert_no_leaks();
}
