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
