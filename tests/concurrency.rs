//! Concurrent runs: ten runners on one Vault path, and two invocations of the same
//! Secrets Manager step at once. Nothing may be lost and no minted token may be left live
//! and unreferenced.

mod support;

use std::time::Duration;

use dynatrace_emulator::{FaultKind, FaultRule, PathMatch};
use dynatrace_token_rotator::marker;
use rotator_sandbox::secrets_manager::{self, STEPS};
use serde_json::json;
use support::{VaultWorld, World};

#[tokio::test]
async fn ten_runners_on_one_vault_path() {
    let w = VaultWorld::new(&[]).await;
    let (path, original) = w.app("app1", json!({"keep": "me"})).await;
    // widen the window between read and write so the runners overlap
    w.emu.add_fault(FaultRule::new(
        "POST",
        PathMatch::Exact("/api/v2/apiTokens".into()),
        FaultKind::Delay(Duration::from_millis(150)),
    ));
    let paths = [path.as_str()];
    let runs = futures::future::join_all((0..10).map(|_| w.rotate(&paths, true, false))).await;
    let rotated = runs
        .iter()
        .filter(|r| r["results"][0]["status"] == "rotated")
        .count();
    let skipped: Vec<_> = runs
        .iter()
        .filter(|r| r["results"][0]["status"] == "skipped")
        .collect();
    assert!(rotated >= 1, "{runs:?}");
    assert_eq!(rotated + skipped.len(), 10, "no runner failed: {runs:?}");
    assert!(
        skipped
            .iter()
            .all(|r| r["results"][0]["reason"] == "concurrent rotation")
    );
    let (version, doc) = w.read(&path).await;
    assert_eq!(
        version as usize,
        1 + rotated,
        "one version per successful runner"
    );
    assert_eq!(doc["keep"], "me");
    w.assert_invariants(std::slice::from_ref(&path)).await;
    // every successful write left its token; losers' tokens are gone
    let minted = w
        .emu
        .tokens()
        .into_iter()
        .filter(|t| dynatrace_token_rotator::marker::is_minted(&t.name))
        .count();
    assert_eq!(minted, rotated, "losers' tokens deleted");
    if rotated == 1 {
        assert!(w.token(&original.id).enabled);
    }
    w.assert_no_leaks();
}

#[tokio::test]
async fn the_same_secrets_manager_step_twice_at_once() {
    let w = World::new(&[]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    let version = w.begin(&secret).await;
    w.emu.add_fault(FaultRule::new(
        "POST",
        PathMatch::Exact("/api/v2/apiTokens".into()),
        FaultKind::Delay(Duration::from_millis(150)),
    ));
    let mut overwritten_by_moto = None;
    for step in STEPS {
        let (a, b) = tokio::join!(
            w.step(&secret, &version, step),
            w.step(&secret, &version, step)
        );
        assert!(a.is_ok() || b.is_ok(), "{step}: both failed: {a:?} {b:?}");
        if let (Ok(a), Ok(b)) = (&a, &b)
            && a["tokenId"] != b["tokenId"]
        {
            // Only on moto: Secrets Manager refuses a second, different value under one
            // ClientRequestToken, moto overwrites a version labelled AWSPENDING. When both
            // runs check the version before either puts, both store and read back their
            // own; the overwritten token is unreferenced and left to the sweep.
            assert_eq!(step, "createSecret", "{a} {b}");
            let pending = w.token_id_at(&secret, secrets_manager::AWSPENDING).await;
            let (a, b) = (a["tokenId"].as_str(), b["tokenId"].as_str());
            let lost = if pending.as_deref() == a { b } else { a };
            assert!(pending.as_deref() == a || pending.as_deref() == b);
            overwritten_by_moto = lost.map(str::to_owned);
        }
    }
    if let Some(lost) = &overwritten_by_moto {
        // The overwritten token carries this version's marker: the sweep's to disable once
        // it is an hour old. Here it is disabled by hand, so the invariants can be checked.
        assert!(marker::is_minted(&w.token(lost).name));
        w.edit_by_hand(lost, json!({"enabled": false})).await;
    }
    w.assert_invariants(&secret).await;
    assert_eq!(w.live_minted().len(), 1, "{:?}", w.live_minted());
    assert!(w.token(&original.id).enabled);
    assert_eq!(w.stages(&secret).await[&version], vec!["AWSCURRENT"]);
    w.assert_no_leaks();
}

#[tokio::test]
async fn a_sweep_during_a_rotation_spares_the_token_being_stored() {
    let w = World::new(&[("AWS_LAMBDA_FUNCTION_NAME", "dynatrace-token-rotator")]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    let version = w.begin(&secret).await;
    // slow down the proof so the sweep runs between the mint and the store
    w.emu.add_fault(FaultRule::new(
        "POST",
        PathMatch::Exact("/api/v2/apiTokens/lookup".into()),
        FaultKind::Delay(Duration::from_millis(200)),
    ));
    let sweep = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        w.invoke(json!({"action": "sweep"})).await
    };
    let (created, swept) = tokio::join!(w.step(&secret, &version, "createSecret"), sweep);
    let created = created.unwrap();
    let swept = swept.unwrap();
    assert!(swept["disabled"].as_array().unwrap().is_empty(), "{swept}");
    w.emu.clear_faults();
    let id = created["tokenId"].as_str().unwrap();
    assert!(
        w.token(id).enabled,
        "the token being stored was not touched"
    );
    for step in ["setSecret", "testSecret", "finishSecret"] {
        w.step(&secret, &version, step).await.unwrap();
    }
    // and a sweep after the rotation changes nothing referenced
    let after = w.invoke(json!({"action": "sweep"})).await.unwrap();
    assert!(after["disabled"].as_array().unwrap().is_empty(), "{after}");
    w.assert_invariants(&secret).await;
    assert!(w.token(&original.id).enabled);
    w.assert_no_leaks();
}
