//! The `audit` invocation against the Dynatrace emulator: tokens land in the right lists by
//! expiry, last use and scopes; disabled tokens are only counted; no value is returned or
//! logged.

mod support;

use std::time::Duration;

use dynatrace_emulator::SeedToken;
use dynatrace_token_rotator::deadline::Deadline;
use dynatrace_token_rotator::environment::EnvironmentUrl;
use dynatrace_token_rotator::secret::TokenValue;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use support::{APP_SCOPES, VaultWorld, World};

fn in_days(d: i64) -> Timestamp {
    Timestamp::now() + SignedDuration::from_hours(24 * d)
}

fn names(env: &Value, list: &str) -> Vec<String> {
    let mut v: Vec<String> = env[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} missing in {env}"))
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn tokens_land_in_the_right_lists_and_no_value_is_returned() {
    let w = World::new(&[("AUDIT_EXPIRING_DAYS", "14"), ("AUDIT_UNUSED_DAYS", "90")]).await;
    let seed = |name: &str, scopes: &[&str], created: i64, expires: Option<i64>, enabled: bool| {
        w.emu.seed_token(SeedToken {
            creation: Some(in_days(created)),
            expiration: expires.map(in_days),
            enabled,
            ..SeedToken::new(name, scopes)
        })
    };
    seed("expiring soon", APP_SCOPES, -1, Some(3), true);
    seed("expired", APP_SCOPES, -30, Some(-2), true);
    seed("long lived idle", APP_SCOPES, -200, Some(100), true);
    let busy = seed("never expires busy", APP_SCOPES, -200, None, true);
    seed(
        "admin",
        &[
            "apiTokens.read",
            "apiTokens.write",
            "activeGateTokenManagement.create",
        ],
        -1,
        Some(100),
        true,
    );
    seed(
        "tenant rotation",
        &["tenantTokenRotation.write"],
        -1,
        Some(60),
        true,
    );
    seed("disabled forever", &["apiTokens.write"], -300, None, false);
    // Use `busy` now: it authenticates its own lookup.
    let env = EnvironmentUrl::parse(&w.emu.url()).unwrap();
    let value = TokenValue::parse(&busy.value).unwrap();
    w.deps
        .dynatrace
        .lookup(
            &env,
            &value,
            &value,
            Deadline::after(Duration::from_secs(10)),
        )
        .await
        .unwrap()
        .unwrap();

    let out = w.invoke(json!({"action": "audit"})).await.unwrap();
    assert_eq!(out["action"], "audit");
    let envs = out["environments"].as_array().unwrap();
    assert_eq!(envs.len(), 1, "{out}");
    let e = &envs[0];
    assert_eq!(e["environmentUrl"], env.to_string());
    assert_eq!(e["tokens"], 8, "7 seeded + the manager: {e}");
    assert_eq!(e["disabled"], 1);
    assert_eq!(names(e, "expiring"), ["expired", "expiring soon"], "{e}");
    assert!(
        e["expiring"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["expirationDate"].is_string() && x["id"].is_string())
    );
    assert_eq!(
        names(e, "neverExpiring"),
        ["never expires busy", "rotator manager"],
        "{e}"
    );
    assert_eq!(names(e, "unused"), ["long lived idle"], "{e}");
    assert_eq!(
        names(e, "tokenManagement"),
        ["admin", "rotator manager", "tenant rotation"],
        "{e}"
    );
    let admin = e["tokenManagement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "admin")
        .unwrap();
    assert_eq!(
        admin["scopes"],
        json!(["apiTokens.write", "activeGateTokenManagement.create"])
    );
    let text = out.to_string();
    for v in w.emu.issued_values() {
        assert!(!text.contains(&v), "a token value in the report");
    }
    w.assert_no_leaks();
}

#[tokio::test]
async fn vault_manager_environment_is_audited_and_no_manager_is_a_config_error() {
    let w = VaultWorld::new(&[]).await;
    w.emu.seed_token(SeedToken {
        creation: Some(in_days(-1)),
        expiration: Some(in_days(5)),
        ..SeedToken::new("short", APP_SCOPES)
    });
    let out = w.invoke(json!({"action": "audit"})).await.unwrap();
    let e = &out["environments"][0];
    assert_eq!(e["tokens"], 2, "{out}");
    assert_eq!(names(e, "expiring"), ["short"]);
    w.assert_no_leaks();

    let none = World::new(&[("DT_MANAGER_SECRET_IDS", "")]).await;
    let err = none.invoke(json!({"action": "audit"})).await.unwrap_err();
    assert_eq!(err.error_type, "ConfigError", "{err}");
    let err = none.invoke(json!({"action": "sweep"})).await.unwrap_err();
    assert_eq!(err.error_type, "ConfigError", "{err}");
}

/// Deletes token `id` in the emulator the way a person would (through the API).
async fn delete_by_hand(emu_url: &str, manager: &str, id: &str) {
    let env = EnvironmentUrl::parse(emu_url).unwrap();
    let auth = TokenValue::parse(manager).unwrap();
    dynatrace_token_rotator::dynatrace::Dynatrace::new(support::fast_retries())
        .unwrap()
        .delete(&env, &auth, id, Deadline::after(Duration::from_secs(10)))
        .await
        .unwrap();
}

fn secrets(env: &Value, list: &str) -> Vec<String> {
    let mut v: Vec<String> = env[list]
        .as_array()
        .unwrap_or_else(|| panic!("{list} missing in {env}"))
        .iter()
        .map(|e| e["secret"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// The new categories over Vault: a path whose token Dynatrace no longer knows
/// (`danglingSecrets`), a path whose token expires before `rotatedAt` + the interval
/// (`expiresBeforeNextRotation`), and personal access tokens.
#[tokio::test]
async fn vault_paths_with_dangling_or_short_lived_tokens_and_personal_tokens_are_reported() {
    let w = VaultWorld::new(&[("ROTATION_INTERVAL_DAYS", "30")]).await;
    let (gone, gone_token) = w.app("gone", json!({})).await;
    delete_by_hand(&w.emu.url(), &w.manager.value, &gone_token.id).await;
    let short = w.emu.seed_token(SeedToken {
        creation: Some(in_days(-1)),
        expiration: Some(in_days(5)),
        ..SeedToken::new("short lived", APP_SCOPES)
    });
    let short_path = w.path("short");
    let rotated_at = dynatrace_token_rotator::dynatrace::format_time(in_days(-1));
    w.bao
        .kv_put(
            "secret",
            &short_path,
            &json!({"token": short.value, "rotatedAt": rotated_at}),
        )
        .await
        .unwrap();
    let (fine, _) = w.app("fine", json!({})).await;
    w.emu.seed_token(SeedToken {
        personal_access_token: true,
        ..SeedToken::new("someone's PAT", APP_SCOPES)
    });
    let mut w = w;
    w.deps.vault.as_mut().unwrap().config.rotate_paths =
        vec![gone.clone(), short_path.clone(), fine.clone()];

    let out = w.invoke(json!({"action": "audit"})).await.unwrap();
    let e = &out["environments"][0];
    assert_eq!(
        secrets(e, "danglingSecrets"),
        [format!("vault:{gone}")],
        "{e}"
    );
    assert_eq!(e["danglingSecrets"][0]["tokenId"], gone_token.id.as_str());
    assert_eq!(
        secrets(e, "expiresBeforeNextRotation"),
        [format!("vault:{short_path}")],
        "{e}"
    );
    let entry = &e["expiresBeforeNextRotation"][0];
    assert!(
        entry["expirationDate"].is_string() && entry["nextRotationDate"].is_string(),
        "{entry}"
    );
    assert_eq!(names(e, "personalAccessTokens"), ["someone's PAT"], "{e}");
    // The audit changes nothing.
    assert_eq!(w.read(&fine).await.0, 1);
    let text = out.to_string();
    for v in w.emu.issued_values() {
        assert!(!text.contains(&v), "a token value in the report");
    }
    w.assert_no_leaks();
}

/// A Secrets Manager secret whose current token was deleted by hand is dangling; one whose
/// token outlives its next rotation is not listed.
#[tokio::test]
async fn a_secrets_manager_secret_whose_token_was_deleted_is_dangling() {
    let w = World::new(&[("AWS_LAMBDA_FUNCTION_NAME", "dynatrace-token-rotator")]).await;
    let (gone, _) = w.app_secret(json!({})).await;
    let (kept, _) = w.app_secret(json!({})).await;
    // Rotated once: the secrets rotate with this function, so the audit reads them.
    w.rotate(&gone).await;
    w.rotate(&kept).await;
    let gone_token = w.token_id_at(&gone, "AWSCURRENT").await.unwrap();
    delete_by_hand(&w.emu.url(), &w.manager.value, &gone_token).await;
    let out = w.invoke(json!({"action": "audit"})).await.unwrap();
    let e = &out["environments"][0];
    let dangling = secrets(e, "danglingSecrets");
    assert_eq!(dangling.len(), 1, "{e}");
    assert!(
        dangling[0].contains(&gone) || gone.contains(&dangling[0]),
        "{dangling:?} vs {gone}"
    );
    assert!(!dangling[0].contains(&kept));
    assert_eq!(e["danglingSecrets"][0]["tokenId"], gone_token.as_str());
    assert!(secrets(e, "expiresBeforeNextRotation").is_empty(), "{e}");
    w.assert_no_leaks();
}

/// A Secrets Manager secret whose token expires before Secrets Manager's next scheduled
/// rotation (`NextRotationDate`, read from moto) is listed under `expiresBeforeNextRotation`.
#[tokio::test]
async fn a_secrets_manager_token_expiring_before_the_next_rotation_is_listed() {
    let w = World::new(&[
        ("AWS_LAMBDA_FUNCTION_NAME", "dynatrace-token-rotator"),
        ("DT_TOKEN_LIFETIME_DAYS", "10"),
        ("ROTATION_INTERVAL_DAYS", "3"),
        ("ROTATION_EXPIRY_MARGIN_DAYS", "1"),
    ])
    .await;
    let (secret, _) = w.app_secret(json!({})).await;
    // Rotated every 30 days (the sandbox's schedule); the minted token lives 10.
    w.rotate(&secret).await;
    let current = w.token_id_at(&secret, "AWSCURRENT").await.unwrap();
    let out = w.invoke(json!({"action": "audit"})).await.unwrap();
    let e = &out["environments"][0];
    let listed = secrets(e, "expiresBeforeNextRotation");
    assert_eq!(listed.len(), 1, "{e}");
    assert!(listed[0].contains(&secret), "{listed:?}");
    let entry = &e["expiresBeforeNextRotation"][0];
    assert_eq!(entry["tokenId"], current.as_str());
    assert!(entry["nextRotationDate"].is_string(), "{entry}");
    assert!(entry["expirationDate"].is_string(), "{entry}");
    w.assert_no_leaks();
}
