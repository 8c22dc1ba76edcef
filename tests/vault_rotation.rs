//! Vault / OpenBao rotation (`rotate-vault`, scheduled, SQS) against a real OpenBao dev
//! server and the Dynatrace emulator, checking versions in Vault and token states in the
//! emulator after each scenario.

mod support;

use dynatrace_emulator::{FaultKind, FaultRule, PathMatch};
use serde_json::{Value, json};
use support::VaultWorld;

#[tokio::test]
async fn rotates_listed_paths_then_skips_then_force_revokes_two_generations_old() {
    let w = VaultWorld::new(&[]).await;
    let (a, ta) = w.app("app1", json!({"owner": "team-a"})).await;
    let (b, tb) = w.app("app2", json!({})).await;
    let out = w.rotate(&[&a, &b], false, false).await;
    assert_eq!(out["action"], "rotate-vault");
    assert_eq!(
        (
            out["rotated"].as_u64(),
            out["skipped"].as_u64(),
            out["failed"].as_u64()
        ),
        (Some(2), Some(0), Some(0)),
        "{out}"
    );
    for (p, t) in [(&a, &ta), (&b, &tb)] {
        let (version, doc) = w.read(p).await;
        assert_eq!(version, 2);
        assert_eq!(doc["previousTokenId"], t.id.as_str());
        let new_id = doc["tokenId"].as_str().unwrap();
        assert!(w.token(new_id).enabled);
        assert!(w.token(&t.id).enabled, "old token kept for the overlap");
        assert!(doc["rotatedAt"].is_string());
        let r = out["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == p.as_str())
            .unwrap();
        assert_eq!(r["status"], "rotated");
        assert_eq!(r["tokenId"], new_id);
        assert_eq!(r["previousTokenId"], t.id.as_str());
    }
    assert_eq!(w.read(&a).await.1["owner"], "team-a", "unknown fields kept");

    let again = w.rotate(&[&a, &b], false, false).await;
    assert_eq!(again["skipped"], 2, "{again}");
    assert!(
        again["results"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("days ago")
    );
    assert_eq!(w.read(&a).await.0, 2);

    let first_successor = w.token_id(&a).await;
    let forced = w.rotate(&[&a], true, false).await;
    assert_eq!(forced["rotated"], 1, "{forced}");
    assert!(!w.token(&ta.id).enabled, "two generations old: disabled");
    let (_, doc) = w.read(&a).await;
    assert_eq!(
        doc["previousTokenId"],
        first_successor.as_str(),
        "previousTokenId moves on"
    );
    assert_eq!(
        forced["results"][0]["previousTokenId"],
        first_successor.as_str()
    );
    assert!(
        w.token(&first_successor).enabled,
        "previousTokenId stays valid"
    );
    w.assert_invariants(&[a.clone(), b.clone()]).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn prefix_lists_recursively_and_never_rotates_the_manager() {
    let w = VaultWorld::new(&[]).await;
    let (a, _) = w.app("team1/app1", json!({})).await;
    let (b, _) = w.app("team2/deep/app2", json!({})).await;
    let out = w
        .invoke(json!({"action": "rotate-vault", "prefix": format!("{}/dynatrace/", w.root)}))
        .await
        .unwrap();
    assert_eq!(out["rotated"], 2, "{out}");
    let paths: Vec<&str> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec![a.as_str(), b.as_str()]);
    let (mv, _) = w.read(&w.path("master")).await;
    assert_eq!(mv, 1, "the manager document is never rotated");
    w.assert_invariants(&[a, b]).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let w = VaultWorld::new(&[]).await;
    let (a, _) = w.app("app1", json!({})).await;
    let (b, _) = w.app("app2", json!({})).await;
    w.rotate(&[&b], false, false).await;
    let issued_before = w.emu.issued_values().len();
    let enabled_before: Vec<_> = w
        .emu
        .tokens()
        .into_iter()
        .filter(|t| t.enabled)
        .map(|t| t.id)
        .collect();
    let writes = |w: &VaultWorld| {
        w.emu
            .requests()
            .iter()
            .filter(|r| r.method != "GET" && !r.path.ends_with("/lookup"))
            .count()
    };
    let writes_before = writes(&w);
    let out = w.rotate(&[&a, &b], false, true).await;
    assert_eq!(out["dryRun"], true);
    assert_eq!(
        (
            out["wouldRotate"].as_u64(),
            out["skipped"].as_u64(),
            out["rotated"].as_u64()
        ),
        (Some(1), Some(1), Some(0)),
        "{out}"
    );
    // dryRun + force: the recently rotated path would rotate too, and still nothing changes
    let forced = w.rotate(&[&a, &b], true, true).await;
    assert_eq!(forced["wouldRotate"], 2, "{forced}");
    for r in forced["results"].as_array().unwrap() {
        assert_eq!(r["status"], "would-rotate");
    }
    assert_eq!(
        (w.read(&a).await.0, w.read(&b).await.0),
        (1, 2),
        "no version written"
    );
    assert_eq!(w.emu.issued_values().len(), issued_before, "nothing minted");
    assert_eq!(
        writes(&w),
        writes_before,
        "no create, update or delete sent to Dynatrace"
    );
    let enabled_after: Vec<_> = w
        .emu
        .tokens()
        .into_iter()
        .filter(|t| t.enabled)
        .map(|t| t.id)
        .collect();
    assert_eq!(enabled_after, enabled_before);
    w.assert_no_leaks();
}

#[tokio::test]
async fn two_runs_at_once_on_one_path_write_one_version_and_revoke_the_losers_token() {
    let w = VaultWorld::new(&[]).await;
    let (a, original) = w.app("app1", json!({})).await;
    // both runs read version 1 before either writes: delay the mint so they overlap
    w.emu.add_fault(FaultRule::new(
        "POST",
        PathMatch::Exact("/api/v2/apiTokens".into()),
        FaultKind::Delay(std::time::Duration::from_millis(300)),
    ));
    let paths = [a.as_str()];
    let (r1, r2) = tokio::join!(w.rotate(&paths, true, false), w.rotate(&paths, true, false));
    let statuses = [
        r1["results"][0]["status"].clone(),
        r2["results"][0]["status"].clone(),
    ];
    assert!(statuses.contains(&json!("rotated")), "{r1} {r2}");
    assert!(statuses.contains(&json!("skipped")), "{r1} {r2}");
    let loser = if r1["results"][0]["status"] == "skipped" {
        &r1
    } else {
        &r2
    };
    assert_eq!(loser["results"][0]["reason"], "concurrent rotation");
    assert_eq!(w.read(&a).await.0, 2, "exactly one new version");
    assert_eq!(w.live_minted().len(), 1, "the loser's token is revoked");
    assert!(w.token(&original.id).enabled);
    w.assert_invariants(std::slice::from_ref(&a)).await;
    w.assert_no_leaks();
}

#[tokio::test]
async fn a_429_storm_slows_a_50_path_run_down_without_failing_paths() {
    let retries = dynatrace_token_rotator::dynatrace::RetrySettings {
        max_attempts: 8,
        min_delay: std::time::Duration::from_millis(20),
        max_delay: std::time::Duration::from_millis(200),
        max_retry_after: std::time::Duration::from_millis(100),
        request_timeout: std::time::Duration::from_secs(5),
    };
    let w = VaultWorld::with_retries(&[("ROTATION_CONCURRENCY", "16")], retries).await;
    let mut paths = Vec::new();
    for i in 0..50 {
        paths.push(w.app(&format!("fleet/app{i:02}"), json!({})).await.0);
    }
    w.emu
        .add_fault(FaultRule::any(FaultKind::throttled(1)).skip(5).times(60));
    let out = w
        .invoke(json!({"action": "rotate-vault", "prefix": format!("{}/dynatrace/fleet", w.root)}))
        .await
        .unwrap();
    assert_eq!(
        out["rotated"],
        50,
        "{}",
        out["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] != "rotated")
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let throttled = w
        .emu
        .requests()
        .iter()
        .filter(|r| r.status == Some(429))
        .count();
    assert_eq!(throttled, 60, "the storm happened");
    w.assert_invariants(&paths).await;
}

#[tokio::test]
async fn approle_login_and_relogin_after_the_token_is_revoked() {
    let bao = rotator_sandbox::Bao::shared();
    let (role_id, secret_id) = bao.approle_for("secret").await.unwrap();
    let w = VaultWorld::new(&[
        ("VAULT_AUTH_METHOD", "approle"),
        ("VAULT_ROLE_ID", &role_id),
        ("VAULT_SECRET_ID", &secret_id),
    ])
    .await;
    let (a, _) = w.app("app1", json!({})).await;
    let (b, _) = w.app("app2", json!({})).await;
    assert_eq!(w.rotate(&[&a], false, false).await["rotated"], 1);
    // revoke the session's token behind its back
    let session = w.deps.vault.as_ref().unwrap().kv.session().clone();
    let token = secrecy::ExposeSecret::expose_secret(&session.token().await.unwrap()).to_owned();
    let body = json!({"token": token});
    let (status, _) = bao
        .request(reqwest::Method::POST, "auth/token/revoke", Some(&body))
        .await
        .unwrap();
    assert!(status.is_success(), "{status}");
    let out = w.rotate(&[&b], false, false).await;
    assert_eq!(out["rotated"], 1, "{out}");
    let new_token =
        secrecy::ExposeSecret::expose_secret(&session.token().await.unwrap()).to_owned();
    assert_ne!(new_token, token, "logged in again");
    let mut w = w;
    w.secrets.extend([token, new_token]);
    w.assert_no_leaks();
}

#[tokio::test]
async fn bad_paths_fail_per_path_with_clear_reasons_and_change_nothing() {
    let w = VaultWorld::new(&[]).await;
    let (good, _) = w.app("good", json!({})).await;
    let no_token = w.path("no-token");
    w.bao
        .kv_put("secret", &no_token, &json!({"apiKey": "x"}))
        .await
        .unwrap();
    let bad_token = w.path("bad-token");
    w.bao
        .kv_put(
            "secret",
            &bad_token,
            &json!({"token": "not-a-dynatrace-token!"}),
        )
        .await
        .unwrap();
    let foreign = w.path("foreign");
    let t = w
        .emu
        .seed_token(dynatrace_emulator::SeedToken::new("f", &["metrics.read"]));
    w.bao
        .kv_put(
            "secret",
            &foreign,
            &json!({"token": t.value, "environmentUrl": "https://other.live.dynatrace.com"}),
        )
        .await
        .unwrap();
    let missing = w.path("missing");
    let tokens_before = w.emu.issued_values().len();
    let out = w
        .rotate(
            &[&good, &no_token, &bad_token, &foreign, &missing],
            false,
            false,
        )
        .await;
    assert_eq!(
        (out["rotated"].as_u64(), out["failed"].as_u64()),
        (Some(1), Some(4)),
        "{out}"
    );
    let reason = |p: &str| {
        out["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["path"] == p)
            .unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        reason(&no_token).contains("no `token` field"),
        "{}",
        reason(&no_token)
    );
    assert!(
        reason(&bad_token).contains("not a valid Dynatrace token"),
        "{}",
        reason(&bad_token)
    );
    assert!(
        reason(&foreign).contains("matches no configured manager"),
        "{}",
        reason(&foreign)
    );
    assert!(
        reason(&missing).contains("no secret"),
        "{}",
        reason(&missing)
    );
    assert_eq!(
        w.emu.issued_values().len(),
        tokens_before + 1,
        "only the good path minted"
    );
    for p in [&no_token, &bad_token, &foreign] {
        assert_eq!(w.read(p).await.0, 1, "{p} unchanged");
    }
    w.assert_no_leaks();
}

#[tokio::test]
async fn permission_denied_is_a_per_path_failure_and_the_minted_token_is_revoked() {
    let bao = rotator_sandbox::Bao::shared();
    let w0 = VaultWorld::new(&[]).await;
    let (a, _) = w0.app("app1", json!({})).await;
    let ro = bao.read_only_token("secret").await.unwrap();
    let w = VaultWorld::new(&[
        ("VAULT_TOKEN", &ro),
        ("VAULT_MANAGER_PATH", &w0.path("master")),
    ])
    .await;
    // the manager of w0 lives in w0's emulator: use w0's emulator through the document
    let out = w.rotate(&[&a], false, false).await;
    assert_eq!(out["failed"], 1, "{out}");
    let reason = out["results"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("permission denied") || reason.contains("Permission"),
        "{reason}"
    );
    assert_eq!(w0.read(&a).await.0, 1, "nothing written");
    assert!(w0.live_minted().is_empty(), "the minted token was removed");
    w.assert_no_leaks();
    // the tokens live in w0's emulator, the logs in w's capture (the later guard wins)
    let logs = w.logs.text();
    assert!(
        w0.emu
            .issued_values()
            .iter()
            .all(|v| !logs.contains(v.as_str()))
    );
}

#[tokio::test]
async fn kv_v1_mount_and_missing_configuration_are_clear_errors() {
    let bao = rotator_sandbox::Bao::shared();
    let mount = format!("kv1-{}", rotator_sandbox::unique_suffix());
    bao.enable_kv1(&mount).await.unwrap();
    let w = VaultWorld::new(&[("VAULT_KV_MOUNT", &mount)]).await;
    let err = w
        .invoke(json!({"action": "rotate-vault", "paths": ["dynatrace/app1"]}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "ConfigError", "{}", err.message);
    assert!(err.message.contains(&mount), "{}", err.message);

    let w = VaultWorld::new(&[]).await;
    let err = w
        .invoke(json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}))
        .await
        .unwrap_err();
    assert_eq!(
        err.error_type, "ConfigError",
        "no paths configured: {}",
        err.message
    );
    let err = w
        .invoke(json!({"action": "rotate-vault", "paths": ["../etc"]}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "MalformedEvent");

    let e = dynatrace_token_rotator::config::Config::from_lookup(|k| match k {
        "VAULT_ADDR" => Some("http://127.0.0.1:8200".into()),
        "VAULT_AUTH_METHOD" => Some("ldap".into()),
        _ => None,
    })
    .unwrap_err();
    assert_eq!(e.variable, "VAULT_AUTH_METHOD");
    w.assert_no_leaks();
}

#[tokio::test]
async fn scheduled_event_rotates_the_configured_paths() {
    let root_probe = VaultWorld::new(&[]).await;
    let root = root_probe.root.clone();
    drop(root_probe);
    let paths = format!("{root}/dynatrace/app1,{root}/dynatrace/app2");
    let w = VaultWorld::new(&[
        ("VAULT_ROTATE_PATHS", &paths),
        ("VAULT_MANAGER_PATH", &format!("{root}/dynatrace/master")),
    ])
    .await;
    // the probe's manager is gone with its emulator: write this world's manager at the path
    w.bao
        .kv_put(
            "secret",
            &format!("{root}/dynatrace/master"),
            &json!({"environmentUrl": w.emu.url(), "token": w.manager.value}),
        )
        .await
        .unwrap();
    for name in ["app1", "app2"] {
        let t = w
            .emu
            .seed_token(dynatrace_emulator::SeedToken::new(name, &["metrics.read"]));
        w.bao
            .kv_put(
                "secret",
                &format!("{root}/dynatrace/{name}"),
                &json!({"token": t.value}),
            )
            .await
            .unwrap();
    }
    let envelope = json!({"version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
        "time": "2026-11-28T00:00:00Z", "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/r"], "detail": {}});
    let out = w.invoke(envelope).await.unwrap();
    assert_eq!(out["rotated"], 2, "{out}");
    // EventBridge Scheduler input is the action itself
    let out = w
        .invoke(json!({"action": "rotate-vault", "force": true}))
        .await
        .unwrap();
    assert_eq!(out["rotated"], 2, "{out}");
    w.assert_no_leaks();
}

/// The `itemIdentifier`s of an SQS answer's `batchItemFailures`.
fn failed_records(out: &Value) -> Vec<&str> {
    out["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("no batchItemFailures in {out}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn sqs_batch_reports_exactly_the_failed_records() {
    let w = VaultWorld::new(&[]).await;
    let (a, _) = w.app("app1", json!({})).await;
    let (b, _) = w.app("app2", json!({})).await;
    let missing = w.path("missing");
    let record = |id: &str, body: Value| json!({"messageId": id, "eventSource": "aws:sqs", "body": body.to_string(), "receiptHandle": "r", "attributes": {}, "messageAttributes": {}, "md5OfBody": "x", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"});
    let event = json!({"Records": [
        record("ok-1", json!({"action": "rotate-vault", "paths": [a]})),
        record("bad-path", json!({"action": "rotate-vault", "paths": [missing]})),
        record("ok-2", json!({"action": "rotate-vault", "paths": [b, a]})),
        {"messageId": "not-json", "eventSource": "aws:sqs", "body": "{nope"},
        record("wrong-action", json!({"action": "sweep"})),
    ]});
    let out = w.invoke(event).await.unwrap();
    let failed = failed_records(&out);
    assert_eq!(failed, vec!["bad-path", "not-json", "wrong-action"]);
    assert_eq!(w.read(&a).await.0, 2, "named by two records, rotated once");
    assert_eq!(w.read(&b).await.0, 2);
    // The records' paths ran as one run: the tenant was listed once for the batch.
    let listings = w
        .emu
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v2/apiTokens")
        .count();
    assert_eq!(listings, 1);
    w.assert_no_leaks();
}

/// SQS allows 256 KiB per message and up to ten messages per batch, so an envelope larger than
/// the per-event limit is legitimate: the limit applies per record, and a record over it fails
/// alone (listed in `batchItemFailures`, so SQS sends it to the dead-letter queue) while the
/// others rotate.
#[tokio::test]
async fn sqs_size_limit_applies_per_record() {
    let w = VaultWorld::new(&[]).await;
    let (a, _) = w.app("app1", json!({})).await;
    let (b, _) = w.app("app2", json!({})).await;
    // Actions refuse unknown fields, so the bodies are padded with JSON whitespace.
    let padded = |path: &str, pad: usize| {
        format!(
            "{{\"action\":\"rotate-vault\",\"paths\":[\"{path}\"]{}}}",
            " ".repeat(pad)
        )
    };
    let record =
        |id: &str, body: String| json!({"messageId": id, "eventSource": "aws:sqs", "body": body});
    let max = dynatrace_token_rotator::event::MAX_EVENT_BYTES;
    let event = json!({"Records": [
        record("a", padded(&a, 150 * 1024)),
        record("too-big", padded(&b, max)),
        record("b", padded(&b, 150 * 1024)),
    ]});
    assert!(
        event.to_string().len() > max,
        "the envelope exceeds the per-event limit"
    );
    let out = w.invoke(event).await.unwrap();
    let failed = failed_records(&out);
    assert_eq!(failed, vec!["too-big"], "{out}");
    assert_eq!(w.read(&a).await.0, 2, "record a rotated");
    assert_eq!(
        w.read(&b).await.0,
        2,
        "record b rotated once (the oversized one did nothing)"
    );
    w.assert_no_leaks();
}

#[tokio::test]
async fn an_edited_previous_token_id_cannot_get_another_token_revoked() {
    let w = VaultWorld::new(&[("DT_OLD_TOKEN_ACTION", "delete")]).await;
    let (a, _) = w.app("app1", json!({})).await;
    let (_, victim) = w.app("other-team", json!({})).await;
    // someone with write access to the path names another team's token as previous
    let (v, mut doc) = w.read(&a).await;
    doc["previousTokenId"] = json!(victim.id);
    w.bao.kv_put_cas("secret", &a, &doc, v).await.unwrap();
    let out = w.rotate(&[&a], true, false).await;
    assert_eq!(out["rotated"], 1, "{out}");
    assert!(
        !w.emu.was_deleted(&victim.id),
        "the victim's token survives"
    );
    assert!(w.token(&victim.id).enabled);
    assert!(w.logs.text().contains("not revoking previousTokenId"));
    // a genuine previous token is still revoked on the next rotation
    let first = w.token_id(&a).await;
    w.rotate(&[&a], true, false).await;
    let second = w.token_id(&a).await;
    w.rotate(&[&a], true, false).await;
    assert!(w.emu.was_deleted(&first), "two generations old: deleted");
    assert!(w.token(&second).enabled);
    w.assert_no_leaks();
}

/// A Vault write that hangs must not get the function killed: requests stop at the deadline
/// less a reserve, so the run still returns its summary (and metric line) with the path failed,
/// keeps the minted token (the write's outcome is unknown) and the next run converges once the
/// held write has landed.
#[tokio::test]
async fn a_hanging_vault_write_leaves_time_for_the_summary() {
    use dynatrace_token_rotator::deadline::Deadline;
    use rotator_sandbox::{FaultProxy, ProxyFault, ProxyRule};
    use std::time::{Duration, Instant};

    let store = FaultProxy::start(&rotator_sandbox::Bao::shared().addr()).await;
    let w = VaultWorld::new(&[("VAULT_ADDR", &store.url())]).await;
    let (a, original) = w.app("app1", json!({})).await;
    store.add_rule(
        ProxyRule::new(ProxyFault::Delay(Duration::from_secs(8)))
            .method("POST")
            .path(&format!("/v1/secret/data/{a}"))
            .times(1),
    );
    let budget = Duration::from_secs(5);
    let started = Instant::now();
    let out = tokio::time::timeout(
        budget,
        dynatrace_token_rotator::app::handle(
            &w.deps,
            json!({"action": "rotate-vault", "paths": [a]}),
            Deadline::after(budget),
        ),
    )
    .await
    .expect("the run returns before the Lambda deadline kills it")
    .expect("a summary, not an error");
    assert!(started.elapsed() < budget, "{:?}", started.elapsed());
    assert_eq!(out["failed"], 1, "{out}");
    assert_eq!(store.fired(), 1);
    // The minted token is kept: the write may still land (and here it does).
    let minted = w.live_minted();
    assert_eq!(minted.len(), 1, "{minted:?}");
    tokio::time::sleep(
        Duration::from_secs(8).saturating_sub(started.elapsed()) + Duration::from_millis(500),
    )
    .await;
    assert_eq!(w.read(&a).await.0, 2, "the held write landed");
    assert_eq!(w.token_id(&a).await, minted[0].id);
    let again = w.rotate(&[&a], false, false).await;
    assert_eq!(again["failed"], 0, "{again}");
    assert!(
        w.token(&original.id).enabled,
        "next-rotation: the original stays for the overlap"
    );
    w.assert_invariants(&[a]).await;
    w.assert_no_leaks();
}

/// A CAS write that timed out but landed, then a repeat refused by the conflict with it, then
/// a read-back of version N+1 that fails: the refusal may be our own landed write, so the
/// outcome is unknown and the minted token (now stored in Vault) must be kept, not deleted.
#[tokio::test]
async fn a_refusal_after_an_unclear_write_keeps_the_token_when_the_read_back_fails() {
    use rotator_sandbox::{FaultProxy, ProxyFault, ProxyRule};
    use std::time::Duration;

    let store = FaultProxy::start(&rotator_sandbox::Bao::shared().addr()).await;
    let mut w = VaultWorld::new(&[("VAULT_ADDR", &store.url())]).await;
    let backend = w.deps.vault.as_mut().unwrap();
    backend.kv = backend.kv.with_request_timeout(Duration::from_millis(1000));
    let (a, original) = w.app("app1", json!({})).await;
    let data = format!("/v1/secret/data/{a}");
    // Two writes held past the client's timeout (both unclear; the first lands at 1.8 s),
    // the third is refused by the conflict with the first.
    store.add_rule(
        ProxyRule::new(ProxyFault::Delay(Duration::from_millis(1800)))
            .method("POST")
            .path(&data)
            .times(2),
    );
    // Every read after the first (the rotation's own read of the latest version) fails.
    store.add_rule(
        ProxyRule::new(ProxyFault::Status(500))
            .method("GET")
            .path(&data)
            .skip(1)
            .times(50),
    );
    let out = w.rotate(&[&a], false, false).await;
    assert_eq!(out["failed"], 1, "{out}");
    store.clear();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (version, _) = w.read(&a).await;
    assert_eq!(version, 2, "the first write landed");
    let stored = w.token_id(&a).await;
    assert!(
        !w.emu.was_deleted(&stored),
        "the token Vault holds was deleted: the refusal was taken for a definitive no"
    );
    assert!(w.token(&stored).enabled);
    assert!(w.token(&original.id).enabled);
    w.assert_invariants(&[a]).await;
    w.assert_no_leaks();
}

/// A world with `ROTATION_CONCURRENCY=window` and 40 paths under `fleet/`, whose emulator
/// serves 4 requests at once at 10 ms each; returns the world, its paths and the summary of
/// one `rotate-vault` run over them.
async fn forty_paths_against_a_capacity_of_four(window: &str) -> (VaultWorld, Vec<String>, Value) {
    let w = VaultWorld::new(&[("ROTATION_CONCURRENCY", window)]).await;
    let mut paths = Vec::new();
    for i in 0..40 {
        paths.push(w.app(&format!("fleet/app{i:02}"), json!({})).await.0);
    }
    w.emu.set_latency(std::time::Duration::from_millis(10));
    w.emu.set_capacity(Some(4));
    let out = w
        .invoke(json!({"action": "rotate-vault", "prefix": format!("{}/dynatrace/fleet", w.root)}))
        .await
        .unwrap();
    (w, paths, out)
}

/// `ROTATION_CONCURRENCY` bounds the Dynatrace calls in flight per environment (not paths):
/// with the emulator serving exactly that many at once, a 40-path run keeps the environment
/// busy (more than one path per slot in progress) and is never shed.
#[tokio::test]
async fn rotation_concurrency_bounds_dynatrace_calls_in_flight_not_paths() {
    let (w, paths, out) = forty_paths_against_a_capacity_of_four("4").await;
    assert_eq!(out["rotated"], 40, "{out}");
    let load = w.emu.load();
    assert_eq!(load.shed, 0, "never more than 4 calls in flight");
    assert_eq!(load.peak_in_flight, 4, "the window was used in full");
    w.emu.set_capacity(None);
    w.assert_invariants(&paths).await;
}

/// A window larger than the environment serves adapts: the run is shed a few times, halves
/// its window and finishes every path, where a fixed 16 against a capacity of 4 would shed
/// most calls and exhaust their retries.
#[tokio::test]
async fn the_window_shrinks_to_what_the_environment_serves() {
    let (w, paths, out) = forty_paths_against_a_capacity_of_four("16").await;
    assert_eq!(out["rotated"], 40, "{out}");
    let load = w.emu.load();
    let calls = w.emu.requests().len() as u64;
    assert!(load.shed > 0, "the capacity was hit");
    assert!(
        load.shed * 5 < calls,
        "adaptive: {} of {calls} calls shed",
        load.shed
    );
    w.emu.set_capacity(None);
    w.assert_invariants(&paths).await;
}
