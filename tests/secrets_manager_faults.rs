//! Faults at every Dynatrace call of every Secrets Manager step. The list of calls is
//! recorded from a clean rotation, so a call added later is covered automatically. For
//! each call and each fault kind (5xx, 429 with `Retry-After`, lost response), the step
//! runs with the fault, then the rotation is retried the way Secrets Manager retries it,
//! and the invariants of docs/design.md §3 are checked on the emulator and the secret.

mod support;

use dynatrace_emulator::{FaultKind, FaultRule, PathMatch, RequestRecord};
use rotator_sandbox::secrets_manager::{self, STEPS};
use serde_json::json;
use support::World;

/// A call as the fault matcher sees it: method and path with token ids generalised.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    method: String,
    path: PathMatch,
}

fn call_of(r: &RequestRecord) -> Call {
    let path = if r.path.starts_with("/api/v2/apiTokens/dt0") {
        PathMatch::Prefix("/api/v2/apiTokens/dt0".into())
    } else {
        PathMatch::Exact(r.path.clone())
    };
    Call {
        method: r.method.clone(),
        path,
    }
}

/// The Dynatrace calls each step makes in a clean rotation, in order.
async fn record_calls() -> Vec<(usize, Vec<Call>)> {
    let w = World::new(&[]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    // a second rotation, so finishSecret also revokes the token two generations old
    w.rotate(&secret).await;
    let version = w.begin(&secret).await;
    let mut out = Vec::new();
    for (i, step) in STEPS.iter().enumerate() {
        let before = w.emu.requests().len();
        w.step(&secret, &version, step).await.unwrap();
        out.push((i, w.emu.requests()[before..].iter().map(call_of).collect()));
    }
    out
}

fn kinds() -> Vec<(&'static str, FaultKind, u32)> {
    // 5xx and 429 persist for as many attempts as the client makes, so the step fails and
    // the caller's retry is exercised; a lost response happens once.
    vec![
        ("503", FaultKind::status(503), 4),
        ("429+Retry-After", FaultKind::throttled(1), 4),
        ("lost response", FaultKind::LostResponse, 1),
    ]
}

#[tokio::test]
async fn every_dynatrace_call_of_every_step_survives_each_fault() {
    let calls = record_calls().await;
    let mut cases = 0;
    for (step_index, step_calls) in &calls {
        for (call_index, call) in step_calls.iter().enumerate() {
            let skip = step_calls[..call_index]
                .iter()
                .filter(|c| *c == call)
                .count() as u32;
            for (kind_name, kind, times) in kinds() {
                cases += 1;
                let label = format!(
                    "{} call #{call_index} {} {:?} with {kind_name}",
                    STEPS[*step_index], call.method, call.path
                );
                let w = World::new(&[]).await;
                let (secret, oldest) = w.app_secret(json!({"team": "t"})).await;
                w.rotate(&secret).await;
                let original = w.token(
                    &w.token_id_at(&secret, secrets_manager::AWSCURRENT)
                        .await
                        .unwrap(),
                );
                let version = w.begin(&secret).await;
                for step in &STEPS[..*step_index] {
                    w.step(&secret, &version, step)
                        .await
                        .unwrap_or_else(|e| panic!("{label}: {step}: {e}"));
                }
                w.emu.add_fault(
                    FaultRule::new(&call.method, call.path.clone(), kind)
                        .skip(skip)
                        .times(times),
                );
                let faulted = w.step(&secret, &version, STEPS[*step_index]).await;
                w.emu.clear_faults();
                let mut failed = faulted.is_err();
                if !failed {
                    for step in &STEPS[*step_index + 1..] {
                        if w.step(&secret, &version, step).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                }
                if failed {
                    // Secrets Manager retries the whole rotation from createSecret.
                    w.retry_rotation(&secret, &version, &label).await;
                }
                let stages = w.stages(&secret).await;
                assert_eq!(stages[&version], vec!["AWSCURRENT"], "{label}: {stages:?}");
                w.assert_invariants(&secret).await;
                let live = w.live_minted();
                assert_eq!(
                    live.len(),
                    2,
                    "{label}: live minted tokens (AWSCURRENT, AWSPREVIOUS) {live:?}"
                );
                assert!(
                    w.token(&original.id).enabled && !w.token(&oldest.id).enabled,
                    "{label}: the previous token must stay valid"
                );
                let doc = w.doc(&secret, secrets_manager::AWSCURRENT).await.unwrap();
                assert_eq!(doc["team"], "t", "{label}: data lost");
                w.assert_no_leaks();
            }
        }
    }
    println!(
        "fault matrix: {cases} cases ({} calls x {} fault kinds)",
        cases / kinds().len(),
        kinds().len()
    );
    assert!(
        cases >= 20,
        "the recorded call list is suspiciously short: {cases}"
    );
}

#[tokio::test]
async fn a_transient_fault_is_absorbed_by_the_client_retries() {
    let w = World::new(&[]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    w.emu.add_fault(
        FaultRule::new(
            "POST",
            PathMatch::Exact("/api/v2/apiTokens".into()),
            FaultKind::status(502),
        )
        .times(1),
    );
    w.emu.add_fault(
        FaultRule::new(
            "POST",
            PathMatch::Exact("/api/v2/apiTokens/lookup".into()),
            FaultKind::throttled(1),
        )
        .times(2),
    );
    w.rotate(&secret).await;
    assert_eq!(w.minted().len(), 1);
    w.assert_invariants(&secret).await;
    let statuses: Vec<_> = w.emu.requests().iter().filter_map(|r| r.status).collect();
    assert!(statuses.contains(&502) && statuses.contains(&429));
}

/// `Retry-After` is honoured in both forms RFC 9110 allows: delta-seconds and an HTTP date.
#[tokio::test]
async fn retry_after_is_honoured_as_seconds_and_as_a_date() {
    for (form, fault) in [
        ("seconds", FaultKind::throttled(1)),
        ("HTTP date", FaultKind::throttled_until(1)),
    ] {
        let mut retries = support::fast_retries();
        retries.max_retry_after = std::time::Duration::from_secs(5);
        let w = World::with_retries(&[], retries).await;
        let (secret, _) = w.app_secret(json!({})).await;
        let version = w.begin(&secret).await;
        w.emu.add_fault(
            FaultRule::new("POST", PathMatch::Exact("/api/v2/apiTokens".into()), fault).times(1),
        );
        let started = std::time::Instant::now();
        w.step(&secret, &version, "createSecret").await.unwrap();
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(950),
            "{form}: waited only {:?}",
            started.elapsed()
        );
        let throttled = w
            .emu
            .requests()
            .iter()
            .filter(|r| r.status == Some(429))
            .count();
        assert_eq!(throttled, 1, "{form}");
    }
}

#[tokio::test]
async fn a_retry_under_a_new_version_cleans_up_the_abandoned_mint() {
    let w = World::new(&[]).await;
    let (secret, original) = w.app_secret(json!({})).await;
    let first = w.begin(&secret).await;
    // The first create's answer is lost (a token exists whose value nobody has); the retry
    // mints and stores a second one; the clean-up of the lost one then fails (listing is
    // down), so createSecret fails and Secrets Manager abandons the version.
    w.emu.add_fault(
        FaultRule::new(
            "POST",
            PathMatch::Exact("/api/v2/apiTokens".into()),
            FaultKind::LostResponse,
        )
        .times(1),
    );
    // the repeat mint fails for longer than the client retries
    w.emu.add_fault(
        FaultRule::new(
            "POST",
            PathMatch::Exact("/api/v2/apiTokens".into()),
            FaultKind::status(500),
        )
        .skip(1),
    );
    assert!(w.step(&secret, &first, "createSecret").await.is_err());
    w.emu.clear_faults();
    assert_eq!(w.live_minted().len(), 1, "the lost mint is live for now");
    // Secrets Manager starts over with a new version.
    w.rotate(&secret).await;
    w.assert_invariants(&secret).await;
    assert_eq!(w.live_minted().len(), 1);
    assert!(w.token(&original.id).enabled);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let w = World::new(&[]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    let version = w.begin(&secret).await;
    let before = w.stages(&secret).await;
    w.emu.add_fault(FaultRule::new(
        "POST",
        PathMatch::Any,
        FaultKind::Redirect {
            location: "http://127.0.0.2:9/steal".into(),
        },
    ));
    let err = w.step(&secret, &version, "createSecret").await.unwrap_err();
    assert_eq!(err.error_type, "DynatraceRedirect", "{}", err.message);
    assert_eq!(w.stages(&secret).await, before);
    assert!(w.minted().is_empty());
    w.assert_no_leaks();
}
