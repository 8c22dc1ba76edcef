//! The operator actions `revoke-leaked` and `rotate-manager` against the Dynatrace emulator,
//! OpenBao and moto: a leaked token is disabled at once and renamed ` [leaked …]` (and never
//! deleted or renamed again by a rotation or a sweep), every secret holding it as current or
//! previous is rotated, a token no secret holds is disabled and reported, an unknown one
//! changes nothing, a dry run changes nothing, and a leaked manager is rotated first and then
//! disabled by its successor. The leak checks cover the leaked value itself. With
//! `DT_EVENTS=on`, rotations, revocations and leak responses post Dynatrace events, and a
//! failing events endpoint fails nothing.

mod support;

use dynatrace_token_rotator::marker;
use rotator_sandbox::secrets_manager;
use serde_json::{Value, json};
use support::{VaultWorld, World};

const FUNCTION: &str = "dynatrace-token-rotator";

fn statuses(report: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = report["secrets"]
        .as_array()
        .unwrap_or_else(|| panic!("no secrets in {report}"))
        .iter()
        .map(|s| {
            (
                s["secret"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

fn names_and_states(emu: &dynatrace_emulator::Emulator) -> Vec<(String, String, bool)> {
    let mut v: Vec<_> = emu
        .tokens()
        .into_iter()
        .map(|t| (t.id, t.name, t.enabled))
        .collect();
    v.sort();
    v
}

async fn vault_world() -> VaultWorld {
    let mut w = VaultWorld::new(&[("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)]).await;
    let prefix = format!("{}/dynatrace/", w.root);
    w.deps.vault.as_mut().unwrap().config.rotate_prefix = Some(prefix);
    w
}

#[tokio::test]
async fn a_leaked_vault_token_is_disabled_kept_as_evidence_and_its_holders_rotated() {
    let w = vault_world().await;
    let (a, first) = w.app("app1", json!({})).await;
    let (b, other) = w.app("app2", json!({})).await;
    w.rotate(&[&a], true, false).await;
    let a_current = w.token_id(&a).await;

    // Dry run: reports the holder, changes nothing.
    let before = names_and_states(&w.emu);
    let dry = w
        .invoke(json!({"action": "revoke-leaked", "token": first.value, "dryRun": true}))
        .await
        .unwrap();
    assert_eq!(dry["tokenId"], first.id.as_str(), "{dry}");
    assert_eq!(dry["disabled"], false, "{dry}");
    assert_eq!(
        statuses(&dry),
        vec![(format!("vault:{a}"), "would-rotate".into())]
    );
    assert_eq!(
        names_and_states(&w.emu),
        before,
        "a dry run changes nothing"
    );
    let (version_before, _) = w.read(&a).await;

    // The previous token of app1 leaked (named by value): disabled, app1 rotated now.
    let out = w
        .invoke(json!({"action": "revoke-leaked", "token": first.value}))
        .await
        .unwrap();
    assert_eq!(out["disabled"], true, "{out}");
    assert_eq!(
        statuses(&out),
        vec![(format!("vault:{a}"), "rotated".into())],
        "{out}"
    );
    let leaked = w.token(&first.id);
    assert!(!leaked.enabled);
    assert!(leaked.name.contains(" [leaked "), "{}", leaked.name);
    let (version_after, doc) = w.read(&a).await;
    assert_eq!(
        version_after,
        version_before + 1,
        "rotated although not due"
    );
    assert_eq!(doc["previousTokenId"], a_current.as_str());
    assert!(w.token(&a_current).enabled, "the overlap token stays valid");
    assert!(
        w.token(&other.id).enabled,
        "app2 does not hold the leaked token"
    );

    // The current token of app2 leaked (named by id).
    let out = w
        .invoke(json!({"action": "revoke-leaked", "tokenId": other.id}))
        .await
        .unwrap();
    assert_eq!(out["disabled"], true, "{out}");
    assert_eq!(
        statuses(&out),
        vec![(format!("vault:{b}"), "rotated".into())],
        "{out}"
    );
    assert!(!w.token(&other.id).enabled);
    let b_new = w.token_id(&b).await;
    assert_ne!(b_new, other.id);
    assert!(w.token(&b_new).enabled);

    // Later rotations and sweeps never rename or delete the evidence, whatever the policy:
    // also a minted token marked leaked, and one disabled past the grace period before it
    // was found leaked.
    let minted = marker::Marker::vault(&w.scope(), &a, 99).name_for("app1 token");
    let long_ago: jiff::civil::Date = "2026-01-01".parse().unwrap();
    let seed = |name: String| {
        w.emu.seed_token(dynatrace_emulator::SeedToken {
            enabled: false,
            creation: Some(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 400)),
            ..dynatrace_emulator::SeedToken::new(&name, support::APP_SCOPES)
        })
    };
    let minted_leaked = seed(marker::leaked_name(&minted, long_ago));
    let disabled_then_leaked = seed(marker::leaked_name(
        &marker::disabled_name(&minted, long_ago, None),
        long_ago,
    ));
    w.rotate(&[&a], true, false).await;
    let swept = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert!(!w.emu.was_deleted(&disabled_then_leaked.id), "{swept}");
    assert_eq!(
        w.token(&disabled_then_leaked.id).name,
        marker::leaked_name(&marker::disabled_name(&minted, long_ago, None), long_ago)
    );
    assert_eq!(
        w.token(&minted_leaked.id).name,
        marker::leaked_name(&minted, long_ago),
        "{swept}"
    );
    for id in [&first.id, &other.id] {
        let t = w.token(id);
        assert!(
            !t.enabled && t.name.contains(" [leaked ") && !t.name.contains("[disabled "),
            "{}",
            t.name
        );
    }
    w.assert_no_leaks();
}

#[tokio::test]
async fn a_token_no_secret_holds_is_disabled_and_an_unknown_one_changes_nothing() {
    let w = vault_world().await;
    w.app("app1", json!({})).await;
    let stray = w.emu.seed_token(dynatrace_emulator::SeedToken::new(
        "someone's script",
        support::APP_SCOPES,
    ));
    let out = w
        .invoke(json!({"action": "revoke-leaked", "token": stray.value}))
        .await
        .unwrap();
    assert_eq!(out["disabled"], true, "{out}");
    assert_eq!(statuses(&out), Vec::<(String, String)>::new());
    let t = w.token(&stray.id);
    assert!(!t.enabled && t.name == format!("someone's script [leaked {}]", today()));

    let before = names_and_states(&w.emu);
    let unknown = format!("dt0c01.{}.{}", "Z".repeat(24), "Q".repeat(64));
    let out = w
        .invoke(json!({"action": "revoke-leaked", "token": unknown}))
        .await
        .unwrap();
    assert_eq!(out["disabled"], false, "{out}");
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .contains("no configured environment knows")
    );
    assert_eq!(names_and_states(&w.emu), before);
    let text = out.to_string();
    assert!(
        !text.contains(&"Q".repeat(64)),
        "the value is never echoed: {text}"
    );
    assert!(!w.logs.contains(&"Q".repeat(64)));
    w.assert_no_leaks();
}

fn today() -> jiff::civil::Date {
    jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date()
}

#[tokio::test]
async fn a_leaked_secrets_manager_token_is_disabled_and_rotate_secret_called() {
    let w = World::new(&[("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)]).await;
    let (secret, first) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    let current = w
        .token_id_at(&secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    let arn = w
        .secrets_manager
        .describe_secret()
        .secret_id(&secret)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();

    let stages_before = w.stages(&secret).await;
    let dry = w
        .invoke(json!({"action": "revoke-leaked", "tokenId": first.id, "dryRun": true}))
        .await
        .unwrap();
    assert_eq!(
        statuses(&dry),
        vec![(arn.clone(), "would-rotate".into())],
        "{dry}"
    );
    assert!(w.token(&first.id).enabled);
    assert_eq!(
        w.stages(&secret).await,
        stages_before,
        "a dry run starts no rotation"
    );

    let out = w
        .invoke(json!({"action": "revoke-leaked", "token": first.value}))
        .await
        .unwrap();
    assert_eq!(out["disabled"], true, "{out}");
    let t = w.token(&first.id);
    assert!(!t.enabled && t.name.contains(" [leaked "), "{}", t.name);
    assert!(w.token(&current).enabled);
    // moto cannot invoke a function it does not host: after setting up the new AWSPENDING
    // version it answers ResourceNotFoundException (on AWS, RotateSecret succeeds and Secrets
    // Manager invokes the four steps). The rotation was started all the same.
    let s = &out["secrets"][0];
    assert_eq!(s["secret"], arn.as_str(), "{out}");
    assert!(
        s["status"] == "rotation-started"
            || s["reason"]
                .as_str()
                .unwrap()
                .contains("ResourceNotFoundException"),
        "{out}"
    );
    let pending = w
        .stages(&secret)
        .await
        .into_iter()
        .find(|(_, labels)| labels.iter().any(|l| l == secrets_manager::AWSPENDING))
        .map(|(v, _)| v)
        .unwrap_or_else(|| panic!("RotateSecret created no pending version: {out}"));
    // What Secrets Manager does next: the four steps.
    w.steps(&secret, &pending).await;
    let new = w
        .token_id_at(&secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    assert!(new != current && w.token(&new).enabled);
    assert!(w.token(&current).enabled, "AWSPREVIOUS stays valid");
    let t = w.token(&first.id);
    assert!(!t.enabled && t.name.contains(" [leaked ") && !t.name.contains("[disabled "));
    w.assert_no_leaks();
}

#[tokio::test]
async fn rotate_manager_mints_with_the_old_manager_and_revokes_with_the_successor() {
    let w = vault_world().await;
    let (a, _) = w.app("app1", json!({})).await;
    let manager_path = w.deps.vault.as_ref().unwrap().config.manager_path.clone();
    let m1 = w.manager.id.clone();

    let dry = w
        .invoke(json!({"action": "rotate-manager", "dryRun": true}))
        .await
        .unwrap();
    assert_eq!(dry["results"][0]["status"], "would-rotate", "{dry}");
    assert_eq!(w.token_id(&manager_path).await, m1);

    let out = w.invoke(json!({"action": "rotate-manager"})).await.unwrap();
    assert_eq!(out["results"][0]["status"], "rotated", "{out}");
    let m2 = w.token_id(&manager_path).await;
    assert_ne!(m2, m1);
    let t2 = w.token(&m2);
    assert!(t2.enabled);
    let mut scopes = t2.scopes.clone();
    scopes.sort();
    let mut old_scopes = w.token(&m1).scopes;
    old_scopes.sort();
    assert_eq!(
        scopes, old_scopes,
        "token-management scopes kept for the manager"
    );
    assert!(
        w.token(&m1).enabled,
        "next-rotation: the old manager overlaps"
    );
    // The new manager works: an ordinary rotation runs with it.
    let r = w.rotate(&[&a], true, false).await;
    assert_eq!(r["rotated"], 1, "{r}");

    let out = w.invoke(json!({"action": "rotate-manager"})).await.unwrap();
    assert_eq!(out["results"][0]["status"], "rotated", "{out}");
    let m3 = w.token_id(&manager_path).await;
    // m1 is two generations old now: disabled, which only another token can do (the
    // emulator refuses a token disabling itself, as Dynatrace does).
    assert!(
        !w.token(&m1).enabled,
        "the manager two generations old is revoked"
    );
    assert!(w.token(&m2).enabled && w.token(&m3).enabled);
    w.assert_no_leaks();
}

#[tokio::test]
async fn a_leaked_vault_manager_is_rotated_first_then_disabled_by_its_successor() {
    let w = vault_world().await;
    let (a, _) = w.app("app1", json!({})).await;
    let manager_path = w.deps.vault.as_ref().unwrap().config.manager_path.clone();
    let leaked = w.manager.clone();
    let out = w
        .invoke(json!({"action": "revoke-leaked", "token": leaked.value}))
        .await
        .unwrap();
    assert_eq!(out["disabled"], true, "{out}");
    assert_eq!(
        statuses(&out),
        vec![(format!("vault:{manager_path}"), "rotated".into())],
        "{out}"
    );
    let t = w.token(&leaked.id);
    assert!(!t.enabled && t.name.contains(" [leaked "), "{}", t.name);
    let successor = w.token_id(&manager_path).await;
    assert_ne!(successor, leaked.id);
    assert!(w.token(&successor).enabled);
    // The rotator keeps working with the successor.
    let r = w.rotate(&[&a], true, false).await;
    assert_eq!(r["rotated"], 1, "{r}");
    w.assert_no_leaks();
}

#[tokio::test]
async fn a_secrets_manager_manager_secret_rotates_through_the_four_steps() {
    let w = World::new(&[("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)]).await;
    let (app, _) = w.app_secret(json!({})).await;
    let m1 = w.manager.id.clone();
    w.rotate(&w.manager_secret).await;
    let m2 = w
        .token_id_at(&w.manager_secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    assert_ne!(m2, m1);
    let mut scopes = w.token(&m2).scopes;
    scopes.sort();
    let mut old_scopes = w.token(&m1).scopes;
    old_scopes.sort();
    assert_eq!(
        scopes, old_scopes,
        "the forbidden-scope rule does not apply to a manager"
    );
    assert!(
        w.token(&m1).enabled,
        "next-rotation: the old manager overlaps"
    );
    // The new manager serves ordinary rotations.
    w.rotate(&app).await;
    w.rotate(&w.manager_secret).await;
    let m3 = w
        .token_id_at(&w.manager_secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    assert!(
        !w.token(&m1).enabled,
        "two generations old: revoked, by another token"
    );
    assert!(w.token(&m2).enabled && w.token(&m3).enabled);
    let app_current = w
        .token_id_at(&app, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    assert!(w.token(&app_current).enabled);
    w.assert_no_leaks();
}

#[tokio::test]
async fn under_immediately_the_successor_revokes_the_manager_it_replaces() {
    let w = World::new(&[
        ("AWS_LAMBDA_FUNCTION_NAME", FUNCTION),
        ("DT_REVOKE_OLD", "immediately"),
    ])
    .await;
    let m1 = w.manager.id.clone();
    w.rotate(&w.manager_secret).await;
    let m2 = w
        .token_id_at(&w.manager_secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    // Only m2 can have disabled m1: Dynatrace refuses a token disabling itself.
    assert!(
        !w.token(&m1).enabled,
        "the old manager is revoked at finish"
    );
    assert!(w.token(&m2).enabled);
    w.assert_no_leaks();
}

/// The `CUSTOM_INFO` events the emulator received with `title` starting with `prefix`.
fn events_titled(emu: &dynatrace_emulator::Emulator, prefix: &str) -> Vec<Value> {
    emu.events()
        .into_iter()
        .filter(|e| e["title"].as_str().is_some_and(|t| t.starts_with(prefix)))
        .collect()
}

#[tokio::test]
async fn events_report_rotations_revocations_and_leaks_in_both_backends() {
    // Secrets Manager: the second rotation disables the original token.
    let w = World::new(&[("DT_EVENTS", "on"), ("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    w.rotate(&secret).await;
    w.rotate(&secret).await;
    assert!(!w.token(&original.id).enabled);
    let described = w
        .secrets_manager
        .describe_secret()
        .secret_id(&secret)
        .send();
    let arn = described.await.unwrap().arn().unwrap().to_owned();
    let revoked = events_titled(&w.emu, "API token disabled");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["eventType"], "CUSTOM_INFO");
    assert_eq!(
        revoked[0]["properties"]["revocation.tokenId"],
        original.id.as_str()
    );
    assert_eq!(revoked[0]["properties"]["revocation.secret"], arn.as_str());
    assert_eq!(events_titled(&w.emu, "API token rotated").len(), 2);
    // A leak response posts its own event naming the secrets it found.
    let current = w
        .token_id_at(&secret, secrets_manager::AWSCURRENT)
        .await
        .unwrap();
    let out = w
        .invoke(json!({"action": "revoke-leaked", "tokenId": current}))
        .await
        .unwrap();
    assert_eq!(out["disabled"], true, "{out}");
    let leaks = events_titled(&w.emu, "Leaked API token disabled");
    assert_eq!(leaks.len(), 1, "{leaks:?}");
    assert_eq!(leaks[0]["properties"]["leak.tokenId"], current.as_str());
    assert!(
        leaks[0]["properties"]["leak.secrets"]
            .as_str()
            .unwrap()
            .contains(arn.as_str()),
        "{leaks:?}"
    );
    w.assert_no_leaks();

    // Vault: the same on a path, and a failing events endpoint never fails the rotation.
    let v = VaultWorld::new(&[("DT_EVENTS", "on")]).await;
    let (path, first) = v.app("app1", json!({})).await;
    v.rotate(&[&path], true, false).await;
    v.emu.add_fault(dynatrace_emulator::FaultRule::new(
        "POST",
        dynatrace_emulator::PathMatch::Prefix("/api/v2/events".into()),
        dynatrace_emulator::FaultKind::status(500),
    ));
    let r = v.rotate(&[&path], true, false).await;
    assert_eq!(r["rotated"], 1, "a failed event fails nothing: {r}");
    assert!(
        !v.token(&first.id).enabled,
        "revoked although its event failed"
    );
    v.emu.clear_faults();
    let r = v.rotate(&[&path], true, false).await;
    assert_eq!(r["rotated"], 1, "{r}");
    let revoked = events_titled(&v.emu, "API token disabled");
    assert_eq!(
        revoked.len(),
        1,
        "only the revocation whose event got through: {revoked:?}"
    );
    assert_eq!(
        revoked[0]["properties"]["revocation.secret"],
        format!("vault:{path}").as_str()
    );
    assert_eq!(events_titled(&v.emu, "API token rotated").len(), 2);
    v.assert_no_leaks();
}

/// A pending token that leaks mid-rotation is never re-enabled by setSecret (it would become
/// current and, named as evidence, never be revoked): the step refuses with
/// `PendingTokenLeaked`.
#[tokio::test]
async fn a_leaked_pending_token_is_never_re_enabled() {
    let w = World::new(&[("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    let version = w.begin(&secret).await;
    w.step(&secret, &version, "createSecret").await.unwrap();
    let pending = w
        .token_id_at(&secret, secrets_manager::AWSPENDING)
        .await
        .unwrap();
    // What revoke-leaked does to the token (its RotateSecret, which in AWS is refused while
    // this rotation is pending, is left out): disabled and renamed as leaked.
    let name = format!("{} [leaked 2026-12-03]", w.token(&pending).name);
    w.edit_by_hand(&pending, json!({"name": name, "enabled": false}))
        .await;
    let err = w.step(&secret, &version, "setSecret").await.unwrap_err();
    assert_eq!(err.error_type, "PendingTokenLeaked", "{}", err.message);
    assert!(!w.token(&pending).enabled, "still disabled");
    assert!(w.token(&pending).name.contains(" [leaked "));
    assert!(w.step(&secret, &version, "testSecret").await.is_err());
    assert_eq!(
        w.token_id_at(&secret, secrets_manager::AWSCURRENT).await,
        Some(original.id.clone()),
        "the leaked token never became current"
    );
    w.assert_no_leaks();
}
