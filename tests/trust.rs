//! The trust rules of docs/design.md §3, tried the way an attacker who may write one secret
//! and an operator with two deployments on one tenant would: the rotator revokes only tokens
//! it proved belong to the secret (a stored value looked up by value, or this deployment's
//! marker for this very secret), never another deployment's, and a failure in one place does
//! not block unrelated work. Each test checks the emulator's tokens and the store afterwards.

mod support;

use dynatrace_emulator::{FaultKind, FaultRule, PathMatch, SeedToken};
use dynatrace_token_rotator::marker::{self, Marker, VaultScope};
use jiff::{SignedDuration, Timestamp};
use rotator_sandbox::secrets_manager::{self, STEPS};
use rotator_sandbox::{FaultProxy, ProxyFault, ProxyRule};
use serde_json::json;
use support::{APP_SCOPES, VaultWorld, World};

/// Name of the function as the sweep sees it (matches [`secrets_manager::LAMBDA_ARN`]).
const FUNCTION: &str = "dynatrace-token-rotator";

/// A value of the victim's shape: its public part (an id is public) with a made-up secret.
fn forged_value(victim_id: &str) -> String {
    format!("{victim_id}.{}", "F".repeat(64))
}

#[tokio::test]
async fn a_forged_secrets_manager_value_cannot_get_another_teams_token_revoked() {
    // A current-format forgery (the victim's public part), and a legacy-looking value with a
    // `tokenId` naming the victim, each ending up under AWSPREVIOUS.
    for legacy in [false, true] {
        let w = World::new(&[]).await;
        let victim = w
            .emu
            .seed_token(SeedToken::new("payments team token", APP_SCOPES));
        let (secret, _) = w.app_secret(json!({})).await;
        let forged = if legacy {
            json!({"environmentUrl": w.emu.url(), "token": "abcdefghijklmnopqrstu", "tokenId": victim.id})
        } else {
            json!({"environmentUrl": w.emu.url(), "token": forged_value(&victim.id)})
        };
        w.rotate(&secret).await;
        // Write the forgery, then put the real value back: the forgery is now AWSPREVIOUS.
        let real = w
            .doc(&secret, secrets_manager::AWSCURRENT)
            .await
            .unwrap()
            .to_string();
        secrets_manager::update_value(&w.secrets_manager, &secret, &forged.to_string())
            .await
            .unwrap();
        secrets_manager::update_value(&w.secrets_manager, &secret, &real)
            .await
            .unwrap();
        w.rotate(&secret).await;
        assert!(
            w.token(&victim.id).enabled,
            "legacy={legacy}: the victim's token was revoked on the word of a forged value"
        );
        let logs = w.logs.text();
        assert!(
            logs.contains("not revoking the old token") && logs.contains(&victim.id),
            "legacy={legacy}: the skipped target is reported with its id"
        );
        w.assert_no_leaks();
    }
}

#[tokio::test]
async fn a_forged_vault_version_cannot_get_another_teams_token_revoked() {
    let w = VaultWorld::new(&[]).await;
    let (a, original) = w.app("app1", json!({})).await;
    let (_, victim) = w.app("other-team", json!({})).await;
    // N-2 holds a forged value naming the victim, N-1 the real token with
    // previousTokenId = victim.
    let (v1, doc1) = w.read(&a).await;
    let v2 = w
        .bao
        .kv_put_cas(
            "secret",
            &a,
            &json!({"token": forged_value(&victim.id)}),
            v1,
        )
        .await
        .unwrap();
    let mut doc3 = doc1.clone();
    doc3["previousTokenId"] = json!(victim.id);
    w.bao.kv_put_cas("secret", &a, &doc3, v2).await.unwrap();
    let out = w.rotate(&[&a], true, false).await;
    assert_eq!(out["rotated"], 1, "{out}");
    assert!(w.token(&victim.id).enabled, "the victim's token survives");
    assert!(
        w.token(&original.id).enabled,
        "the rotated-away token stays for the overlap"
    );
    assert!(w.logs.text().contains("not revoking previousTokenId"));
    w.assert_invariants(&[a]).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn the_previous_vault_token_is_found_past_unrelated_versions() {
    let w = VaultWorld::new(&[]).await;
    let (a, original) = w.app("app1", json!({"team": "payments"})).await;
    w.rotate(&[&a], true, false).await;
    // Someone edits another field between two rotations: a version with the same token.
    let (v, mut doc) = w.read(&a).await;
    doc["team"] = json!("payments-eu");
    w.bao.kv_put_cas("secret", &a, &doc, v).await.unwrap();
    let first = w.token_id(&a).await;
    let out = w.rotate(&[&a], true, false).await;
    assert_eq!(out["rotated"], 1, "{out}");
    let t = w.token(&original.id);
    assert!(
        !t.enabled,
        "the token two generations old is revoked, proven by the version that stored it"
    );
    assert!(marker::disabled_on(&t.name).is_some(), "{}", t.name);
    assert!(
        w.token(&first).enabled,
        "the previous token stays for the overlap"
    );
    // The original carried no marker: it now carries this path's, so this deployment's
    // sweep (and no other) may delete it after the grace period.
    assert_eq!(
        marker::owner_key(&t.name),
        Some(w.scope().secret_key(&a).as_str()),
        "{}",
        t.name
    );
    w.assert_invariants(&[a]).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn two_vault_deployments_on_one_tenant_never_touch_each_other() {
    let mut w = VaultWorld::new(&[]).await;
    w.deps.vault.as_mut().unwrap().config.rotate_prefix = Some(format!("{}/dynatrace/", w.root));
    let (a, _) = w.app("app1", json!({})).await;
    w.rotate(&[&a], true, false).await;
    // Deployment B (a staging Vault) has a path of the same name on the same tenant: its
    // current token and a rollback token it disabled a month ago.
    let staging = VaultScope::new("https://vault.staging.example.com:8200", None, "secret");
    let old = Timestamp::now() - SignedDuration::from_hours(24 * 40);
    let b_current = w.emu.seed_token(SeedToken {
        creation: Some(old),
        ..SeedToken::new(
            &Marker::vault(&staging, &a, 2).name_for("app1 token"),
            APP_SCOPES,
        )
    });
    let b_rollback = w.emu.seed_token(SeedToken {
        creation: Some(old),
        enabled: false,
        ..SeedToken::new(
            &marker::disabled_name(
                &Marker::vault(&staging, &a, 1).name_for("app1 token"),
                "2026-01-01".parse().unwrap(),
                None,
            ),
            APP_SCOPES,
        )
    });
    // A's own leftover of an interrupted rotation of the same path: A's to clean up.
    let a_orphan = w.emu.seed_token(SeedToken {
        creation: Some(old),
        ..SeedToken::new(
            &Marker::vault(&w.scope(), &a, 2).name_for("app1 token"),
            APP_SCOPES,
        )
    });
    let out = w.rotate(&[&a], true, false).await;
    assert_eq!(out["rotated"], 1, "{out}");
    assert!(!w.token(&a_orphan.id).enabled, "A cleans up its own mint");
    assert!(
        w.token(&b_current.id).enabled,
        "A's clean-up after its write disabled B's current token"
    );
    let sweep = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert!(
        w.token(&b_current.id).enabled,
        "A's sweep disabled B's current token: {sweep}"
    );
    assert!(
        !w.emu.was_deleted(&b_rollback.id),
        "A's sweep deleted B's rollback token: {sweep}"
    );
    w.assert_no_leaks();
}

#[tokio::test]
async fn the_sweep_leaves_a_path_whose_latest_version_is_soft_deleted() {
    let mut w = VaultWorld::new(&[]).await;
    w.deps.vault.as_mut().unwrap().config.rotate_prefix = Some(format!("{}/dynatrace/", w.root));
    let (a, _) = w.app("app1", json!({})).await;
    w.rotate(&[&a], true, false).await;
    w.rotate(&[&a], true, false).await;
    let current = w.token_id(&a).await;
    w.bao.kv_delete_latest("secret", &a).await.unwrap();
    let out = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert!(
        w.token(&current).enabled,
        "an undelete would bring back a disabled token: {out}"
    );
    assert_eq!(out["disabled"], json!([]), "{out}");
    assert!(out["errors"].to_string().contains("deleted"), "{out}");
    w.assert_no_leaks();
}

#[tokio::test]
async fn a_vault_token_expiring_before_the_next_run_is_due() {
    let w = VaultWorld::new(&[]).await;
    let recently = (Timestamp::now() - SignedDuration::from_hours(24))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let soon = |days: i64| Timestamp::now() + SignedDuration::from_hours(24 * days);
    let seed = |name: &str, expires: Timestamp| {
        w.emu.seed_token(SeedToken {
            expiration: Some(expires),
            ..SeedToken::new(name, APP_SCOPES)
        })
    };
    // `expiresAt` recorded: 3 days left, inside the default 7-day margin.
    let t1 = seed("short", soon(3));
    let p1 = w.path("recorded");
    w.bao
        .kv_put(
            "secret",
            &p1,
            &json!({"token": t1.value, "rotatedAt": recently, "expiresAt": soon(3).to_string()}),
        )
        .await
        .unwrap();
    // Not recorded (an older document): a lookup tells.
    let t2 = seed("short too", soon(3));
    let p2 = w.path("looked-up");
    w.bao
        .kv_put(
            "secret",
            &p2,
            &json!({"token": t2.value, "rotatedAt": recently}),
        )
        .await
        .unwrap();
    // 20 days left: not due.
    let t3 = seed("long", soon(20));
    let p3 = w.path("not-due");
    w.bao
        .kv_put(
            "secret",
            &p3,
            &json!({"token": t3.value, "rotatedAt": recently}),
        )
        .await
        .unwrap();
    let out = w.rotate(&[&p1, &p2, &p3], false, false).await;
    assert_eq!(out["rotated"], 2, "{out}");
    assert_eq!(out["skipped"], 1, "{out}");
    let (_, doc) = w.read(&p1).await;
    let new = w.token(&w.token_id(&p1).await);
    let recorded: Timestamp = doc["expiresAt"].as_str().unwrap().parse().unwrap();
    let actual = new.expiration.expect("the successor expires");
    assert!(
        (recorded.as_second() - actual.as_second()).abs() <= 1,
        "the rotation records the new token's expiry: {doc}"
    );
    w.assert_no_leaks();
}

#[tokio::test]
async fn one_unusable_manager_fails_only_the_secrets_of_its_environment() {
    let mut w = World::new(&[]).await;
    // A second manager secret without environmentUrl: unusable.
    let broken = w
        .secret_with(&json!({"token": w.manager.value}).to_string())
        .await;
    w.deps.config.manager_secret_ids = vec![w.manager_secret.clone(), broken.clone()];
    let (secret, _) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    w.assert_invariants(&secret).await;
    // A secret of another environment names the broken manager in its error.
    let other = w
        .secret_with(
            &json!({"environmentUrl": "https://elsewhere.live.dynatrace.com", "token": forged_value("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX")})
                .to_string(),
        )
        .await;
    let version = w.begin(&other).await;
    let err = w.step(&other, &version, "createSecret").await.unwrap_err();
    assert_eq!(err.error_type, "ManagerUnusable", "{err}");
    assert!(err.message.contains(&broken), "{err}");
    w.assert_no_leaks();
}

#[tokio::test]
async fn a_failing_orphan_scan_does_not_keep_awscurrent_from_moving() {
    let w = World::new(&[]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    let version = w.begin(&secret).await;
    // A first createSecret fails at the mint (a 500 past the client's retries, so it may
    // have minted): it leaves the write-ahead label, and finishSecret will list the tenant.
    w.emu.add_fault(
        FaultRule::new(
            "POST",
            PathMatch::Exact("/api/v2/apiTokens".into()),
            FaultKind::status(500),
        )
        .times(100),
    );
    assert!(w.step(&secret, &version, "createSecret").await.is_err());
    w.emu.clear_faults();
    for step in &STEPS[..3] {
        w.step(&secret, &version, step).await.unwrap();
    }
    let minting = |stages: &std::collections::BTreeMap<String, Vec<String>>| {
        stages.values().any(|l| {
            l.iter()
                .any(|l| l == dynatrace_token_rotator::secrets_manager::MINTING)
        })
    };
    assert!(
        minting(&w.stages(&secret).await),
        "the label survives the retried create"
    );
    // The tenant-wide listing fails for longer than the client retries.
    w.emu.add_fault(
        FaultRule::new(
            "GET",
            PathMatch::Exact("/api/v2/apiTokens".into()),
            FaultKind::status(503),
        )
        .times(100),
    );
    w.step(&secret, &version, "finishSecret").await.unwrap();
    w.emu.clear_faults();
    let listings_refused = w
        .emu
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v2/apiTokens" && r.status == Some(503))
        .count();
    assert!(listings_refused > 0, "finishSecret tried to list");
    let stages = w.stages(&secret).await;
    assert_eq!(
        stages[&version]
            .iter()
            .filter(|l| *l != dynatrace_token_rotator::secrets_manager::MINTING)
            .collect::<Vec<_>>(),
        vec![secrets_manager::AWSCURRENT]
    );
    assert!(
        minting(&stages),
        "an incomplete clean-up keeps the label for the next finishSecret"
    );
    assert!(
        !w.token(&original.id).enabled,
        "the policy's revocation still happened"
    );
    w.assert_invariants(&secret).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn a_vault_create_retried_after_a_5xx_leaves_no_live_orphan() {
    let w = VaultWorld::new(&[]).await;
    let proxy = FaultProxy::start(&w.emu.url()).await;
    w.bao
        .kv_put(
            "secret",
            &w.path("master"),
            &json!({"environmentUrl": proxy.url(), "token": w.manager.value}),
        )
        .await
        .unwrap();
    let (a, _) = w.app("app1", json!({})).await;
    // The first create mints, but answers 500; the client retries and mints again.
    proxy.add_rule(
        ProxyRule::new(ProxyFault::ForwardThenStatus(500))
            .method("POST")
            .path("/api/v2/apiTokens")
            .times(1),
    );
    let out = w.rotate(&[&a], true, false).await;
    assert_eq!(out["rotated"], 1, "{out}");
    assert_eq!(proxy.fired(), 1);
    // No sweep: the rotation itself removes what the 5xx'd create minted.
    w.assert_invariants(&[a]).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn the_audit_reports_live_mints_of_deleted_secrets() {
    let w = World::new(&[("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)]).await;
    let (kept, _) = w.app_secret(json!({})).await;
    let (gone, _) = w.app_secret(json!({})).await;
    w.rotate(&kept).await;
    w.rotate(&gone).await;
    let orphan = w
        .token_id_at(&gone, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    let live = w
        .token_id_at(&kept, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    w.secrets_manager
        .delete_secret()
        .secret_id(&gone)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    // Another deployment's mint on the same tenant is not ours to report.
    let foreign = w.emu.seed_token(SeedToken::new(
        &Marker::secrets_manager(
            "arn:aws:secretsmanager:eu-west-1:999999999999:secret:x",
            "v",
        )
        .name_for("x"),
        APP_SCOPES,
    ));
    let out = w.invoke(json!({"action": "audit"})).await.unwrap();
    let listed: Vec<&str> = out["environments"][0]["orphanedMinted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&orphan.as_str()), "{out}");
    assert!(!listed.contains(&live.as_str()), "{out}");
    assert!(!listed.contains(&foreign.id.as_str()), "{out}");
    // The sweep cannot attribute it, so it leaves it to a person.
    w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert!(w.token(&orphan).enabled);
    w.assert_no_leaks();
}

/// Whoever may write a secret's `AWSPENDING` can store a token of their own there: the
/// rotator never re-enables it or grants it scopes, because it does not carry this rotation's
/// marker (setSecret refuses; testSecret's scope repair leaves it alone).
#[tokio::test]
async fn a_foreign_pending_token_is_never_enabled_or_given_scopes() {
    let w = World::new(&[]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    for enabled in [false, true] {
        let version = w.begin(&secret).await;
        let theirs = w.emu.seed_token(SeedToken {
            enabled,
            ..SeedToken::new("someone's token", &["metrics.read"])
        });
        let doc = rotator_sandbox::token_document(&w.emu.url(), &theirs.value, &[]);
        secrets_manager::put_value(
            &w.secrets_manager,
            &secret,
            &version,
            &doc,
            &[secrets_manager::AWSPENDING],
        )
        .await
        .unwrap();
        let step = if enabled { "testSecret" } else { "setSecret" };
        let err = w.step(&secret, &version, step).await.unwrap_err();
        assert_eq!(
            err.error_type, "NewTokenFailedCheck",
            "{step}: {}",
            err.message
        );
        let after = w.token(&theirs.id);
        assert_eq!(after.enabled, enabled, "{step}");
        assert_eq!(after.scopes, vec!["metrics.read".to_owned()], "{step}");
        secrets_manager::cancel_rotation(&w.secrets_manager, &secret)
            .await
            .unwrap();
        secrets_manager::remove_stage(
            &w.secrets_manager,
            &secret,
            secrets_manager::AWSPENDING,
            &version,
        )
        .await
        .unwrap();
    }
    w.assert_no_leaks();
}

/// A manager secret's pending document naming another host: finishSecret, invoked directly,
/// refuses before any call, so neither manager token reaches that host.
#[tokio::test]
async fn a_manager_secret_pending_on_another_host_reaches_nothing() {
    let w = World::new(&[]).await;
    let elsewhere = rotator_sandbox::StubServer::replies(vec![rotator_sandbox::Reply::json(
        200,
        r#"{"id":"dt0c01.AAAAAAAAAAAAAAAAAAAAAAAA"}"#,
    )]);
    // Rotated once: AWSPREVIOUS holds the old manager, whose value finishSecret looks up.
    w.rotate(&w.manager_secret).await;
    let version = w.begin(&w.manager_secret).await;
    let theirs = w
        .emu
        .seed_token(SeedToken::new("foreign", &["metrics.read"]));
    let doc = rotator_sandbox::token_document(&elsewhere.url(), &theirs.value, &[]);
    secrets_manager::put_value(
        &w.secrets_manager,
        &w.manager_secret,
        &version,
        &doc,
        &[secrets_manager::AWSPENDING],
    )
    .await
    .unwrap();
    let err = w
        .step(&w.manager_secret, &version, "finishSecret")
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "EnvironmentMismatch", "{}", err.message);
    assert!(
        elsewhere.requests().is_empty(),
        "{:?}",
        elsewhere.requests()
    );
    assert!(w.token(&w.manager.id).enabled);
    w.assert_no_leaks();
}
