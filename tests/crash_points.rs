//! Crash points: the function dies between every pair of consecutive external calls
//! (each Dynatrace request and each Secrets Manager API call), then the caller retries the
//! way it would (Secrets Manager re-runs the rotation; the Vault schedule runs again), and
//! the invariants of docs/design.md §3 must hold, and the policy's revocation
//! eventually happens (the token two generations old is revoked in the end). A crash is simulated by a panic raised just
//! before call N is sent, inside a spawned task: nothing after it runs, no clean-up, exactly
//! like a process that was killed; only what reached the outside world survives.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_secretsmanager::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_secretsmanager::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use dynatrace_token_rotator::app::{self, Deps};
use dynatrace_token_rotator::deadline::Deadline;
use dynatrace_token_rotator::dynatrace::Dynatrace;
use rotator_sandbox::secrets_manager::STEPS;
use serde_json::json;
use support::{VaultWorld, World};

/// Counts external calls; panics ("crashes") when asked to at call `crash_at`.
#[derive(Debug, Default)]
struct Calls {
    n: AtomicUsize,
    crash_at: Option<usize>,
}

impl Calls {
    fn tick(&self, what: &str) {
        let i = self.n.fetch_add(1, Ordering::SeqCst);
        if self.crash_at == Some(i) {
            panic!("simulated crash before external call #{i} ({what})");
        }
    }
}

#[derive(Debug)]
struct SmCalls(Arc<Calls>);

impl Intercept for SmCalls {
    fn name(&self) -> &'static str {
        "crash-points"
    }
    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.tick("Secrets Manager");
        Ok(())
    }
}

/// Dependencies like `base`'s, with every external call counted by `calls`.
fn counted(base: &Deps, calls: &Arc<Calls>, with_sm: bool) -> Arc<Deps> {
    let c = calls.clone();
    let dt = Dynatrace::new(support::fast_retries())
        .unwrap()
        .with_call_hook(Arc::new(move |op| c.tick(op)));
    let sm = if with_sm {
        let conf = base
            .secrets_manager
            .config()
            .to_builder()
            .interceptor(SmCalls(calls.clone()))
            .build();
        aws_sdk_secretsmanager::Client::from_conf(conf)
    } else {
        base.secrets_manager.clone()
    };
    Arc::new(Deps {
        config: base.config.clone(),
        secrets_manager: sm,
        sqs: base.sqs.clone(),
        dynatrace: dt,
        vault: base.vault.clone(),
    })
}

/// Runs the four steps with `deps` in a task; returns false when it crashed.
async fn run_steps(deps: Arc<Deps>, secret: String, version: String) -> bool {
    let task = tokio::spawn(async move {
        for step in STEPS {
            let ev = json!({"Step": step, "SecretId": secret, "ClientRequestToken": version});
            // an error (not a crash) stops the rotation, as it would in Secrets Manager
            if app::handle(&deps, ev, Deadline::none()).await.is_err() {
                return;
            }
        }
    });
    task.await.is_ok()
}

#[tokio::test]
async fn secrets_manager_rotation_survives_a_crash_between_any_two_calls() {
    // calibrate: how many external calls does a clean rotation make?
    let w = World::new(&[]).await;
    let (secret, _) = w.app_secret(json!({})).await;
    // measured on a second rotation, whose finishSecret also revokes a token
    w.rotate(&secret).await;
    let version = w.begin(&secret).await;
    let calls = Arc::new(Calls::default());
    assert!(run_steps(counted(&w.deps, &calls, true), secret.clone(), version).await);
    let total = calls.n.load(Ordering::SeqCst);
    assert!(total >= 20, "a rotation makes more calls than {total}");
    drop(w);

    for crash_at in 0..total {
        let w = World::new(&[]).await;
        let (secret, seeded) = w.app_secret(json!({"keep": "me"})).await;
        w.rotate(&secret).await;
        let original = w.token(&w.token_id_at(&secret, "AWSCURRENT").await.unwrap());
        let version = w.begin(&secret).await;
        let calls = Arc::new(Calls {
            n: AtomicUsize::new(0),
            crash_at: Some(crash_at),
        });
        let completed = run_steps(
            counted(&w.deps, &calls, true),
            secret.clone(),
            version.clone(),
        )
        .await;
        assert!(!completed, "crash point {crash_at} was not reached");
        // restart: Secrets Manager retries the rotation
        w.retry_rotation(&secret, &version, &format!("crash {crash_at}"))
            .await;
        let label = format!("crash before call #{crash_at}");
        assert_eq!(
            w.stages(&secret).await[&version],
            vec!["AWSCURRENT"],
            "{label}"
        );
        w.assert_invariants(&secret).await;
        assert_eq!(
            w.live_minted().len(),
            2,
            "{label}: AWSCURRENT and AWSPREVIOUS only: {:?}",
            w.live_minted()
        );
        assert!(w.token(&original.id).enabled, "{label}");
        assert!(
            !w.token(&seeded.id).enabled,
            "{label}: the token two generations old must be revoked in the end"
        );
        assert_eq!(
            w.doc(&secret, "AWSCURRENT").await.unwrap()["keep"],
            "me",
            "{label}"
        );
        w.assert_no_leaks();
    }
    println!("crash points covered (Secrets Manager): {total}");
}

#[tokio::test]
async fn vault_rotation_survives_a_crash_between_any_two_dynatrace_calls() {
    let w = VaultWorld::new(&[]).await;
    let (path, _) = w.app("app1", json!({})).await;
    // measured on a second rotation, which also revokes the token two generations old
    w.rotate(&[&path], true, false).await;
    let calls = Arc::new(Calls::default());
    let deps = counted(&w.deps, &calls, false);
    let action = json!({"action": "rotate-vault", "paths": [path], "force": true});
    app::handle(&deps, action, Deadline::none()).await.unwrap();
    let total = calls.n.load(Ordering::SeqCst);
    drop(w);
    assert!(total >= 6, "{total}");

    for crash_at in 0..total {
        let mut w = VaultWorld::new(&[]).await;
        let (path, seeded) = w.app("app1", json!({"keep": "me"})).await;
        w.deps.vault.as_mut().unwrap().config.rotate_paths = vec![path.clone()];
        w.rotate(&[&path], true, false).await;
        let original = w.token(&w.token_id(&path).await);
        let calls = Arc::new(Calls {
            n: AtomicUsize::new(0),
            crash_at: Some(crash_at),
        });
        let deps = counted(&w.deps, &calls, false);
        let action = json!({"action": "rotate-vault", "paths": [path.clone()], "force": true});
        let crashed =
            tokio::spawn(async move { app::handle(&deps, action, Deadline::none()).await })
                .await
                .is_err();
        assert!(crashed, "crash point {crash_at} was not reached");
        // the schedule runs again (not due any more if the write landed, so forced like a retry)
        let (v_before, _) = w.read(&path).await;
        let out = w.rotate(&[&path], v_before == 2, false).await;
        assert_eq!(out["failed"], 0, "crash {crash_at}: {out}");
        let label = format!("vault crash before call #{crash_at}");
        // then the daily sweep, which finishes a revocation the crashed run left undone
        let sweep = w.invoke(json!({"action": "sweep"})).await.unwrap();
        assert_eq!(sweep["errors"], json!([]), "{label}: {sweep}");
        assert!(
            !w.token(&seeded.id).enabled,
            "{label}: the token two generations old must be revoked in the end: {sweep}"
        );
        w.assert_invariants(std::slice::from_ref(&path)).await;
        assert_eq!(w.read(&path).await.1["keep"], "me", "{label}");
        assert!(w.token(&original.id).enabled, "{label}");
        w.assert_no_leaks();
    }
    println!("crash points covered (Vault): {total}");
}
