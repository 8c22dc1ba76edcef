//! The fault-injection matrix: every external call the rotator makes × every fault kind.
//!
//! The list of calls is recorded from a clean run, so a call added later is covered
//! automatically:
//!
//! - a Secrets Manager rotation (the four steps): the Dynatrace calls from the emulator's
//!   request log, the Secrets Manager calls from a [`FaultProxy`] in front of moto;
//! - a Vault `rotate-vault` run over two paths, forced: the Dynatrace calls from the emulator,
//!   the Vault requests from a [`FaultProxy`] in front of OpenBao.
//!
//! A call is identified by what a fault matcher sees (method and path with token ids and the
//! test's folder generalised; the `X-Amz-Target` for Secrets Manager) and by its occurrence
//! among identical calls of its step. For each (call, occurrence, fault kind) a fresh world
//! runs up to the step, the single fault is injected, the step and the rest run, the fault is
//! cleared, then the caller's retries run (Secrets Manager re-runs the rotation with the same
//! version, then the sweep; Vault: the schedule runs again — forced for a path the faulted run
//! did not write — then the sweep), and docs/design.md §3 is checked: the current token live and
//! enabled, every labelled token not revoked, no minted token live and unreferenced, no data
//! lost (an extra field survives), no secret in any log line or output.
//!
//! Fault kinds: 5xx and 429 (Secrets Manager: `400 ThrottlingException`) persist for more
//! attempts than any client makes, so the step fails and the caller's retry is exercised; a
//! lost response, a refused (reset) connection and a timeout past the invocation's deadline
//! happen once. For the timeout, the faulted invocation gets a short deadline and is killed
//! at it (as Lambda would), the delayed request still reaches the server just after, and the
//! caller's retry starts once it has landed.
//!
//! A *delayed write* (store calls only) holds the request past the client's own request
//! timeout within a normal deadline, then forwards it: the client sees a timeout and must
//! settle the write by repeating it, never by deleting a token whose write may still land.
//!
//! Besides safety, each case checks that the policy's revocation eventually happens: after
//! the caller's retries and the sweep, the token two generations old is revoked.
//!
//! A Vault mint request that times out and lands after the run is disabled by the sweep,
//! which treats any minted token whose marker names an already stored version as stale.

mod support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_secretsmanager::config::retry::RetryConfig;
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use dynatrace_emulator::{FaultKind, FaultRule, PathMatch, RequestRecord, SeedToken};
use dynatrace_token_rotator::app::{self, Deps, HandlerError};
use dynatrace_token_rotator::deadline::Deadline;
use rotator_sandbox::secrets_manager::{self, STEPS};
use rotator_sandbox::{Bao, FaultProxy, Moto, ProxyCall, ProxyFault, ProxyRule};
use serde_json::{Value, json};
use support::{APP_SCOPES, ROTATION_TOKEN, VaultWorld, World};

/// Name of the function as the sweep sees it (matches [`secrets_manager::LAMBDA_ARN`]).
const FUNCTION: &str = "dynatrace-token-rotator";

/// Deadline of the invocation that suffers a timeout.
const SHORT_DEADLINE: Duration = Duration::from_secs(2);
/// How long a timed-out request is held before it reaches the server: past the deadline.
const PAST_DEADLINE: Duration = Duration::from_millis(2200);
/// How long a delayed write is held: past the store clients' request timeouts
/// ([`STORE_REQUEST_TIMEOUT`]), well within the deadline.
const DELAYED_WRITE: Duration = Duration::from_millis(1800);
/// The store clients' per-attempt timeout in the matrix.
const STORE_REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);
/// Firings of a persistent fault: more than any client's attempts (Dynatrace 4, Vault 4,
/// AWS SDK standard mode 3).
const PERSISTENT: u32 = 8;

/// An external call as a fault matcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    /// A Dynatrace request: method and path (token ids generalised to a prefix).
    Dynatrace { method: String, path: PathMatch },
    /// A Secrets Manager API (`X-Amz-Target`, e.g. `secretsmanager.PutSecretValue`).
    SecretsManager { target: String },
    /// A Vault request: method and path with the test's folder replaced by `{root}`.
    Vault { method: String, path: String },
}

impl Call {
    fn describe(&self) -> String {
        match self {
            Call::Dynatrace { method, path } => format!("Dynatrace {method} {path:?}"),
            Call::SecretsManager { target } => format!("Secrets Manager {target}"),
            Call::Vault { method, path } => format!("Vault {method} {path}"),
        }
    }
}

fn dynatrace_call(r: &RequestRecord) -> Call {
    let path = if r.path.starts_with("/api/v2/apiTokens/dt0") {
        PathMatch::Prefix("/api/v2/apiTokens/dt0".into())
    } else {
        PathMatch::Exact(r.path.clone())
    };
    Call::Dynatrace {
        method: r.method.clone(),
        path,
    }
}

fn sm_call(c: &ProxyCall) -> Call {
    Call::SecretsManager {
        target: c
            .target
            .clone()
            .unwrap_or_else(|| format!("{} {}", c.method, c.path)),
    }
}

fn vault_call(c: &ProxyCall, root: &str) -> Call {
    Call::Vault {
        method: c.method.clone(),
        path: c.path.replace(root, "{root}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    ServerError,
    Throttled,
    LostResponse,
    Refused,
    Timeout,
    DelayedWrite,
}

const KINDS: [Kind; 6] = [
    Kind::ServerError,
    Kind::Throttled,
    Kind::LostResponse,
    Kind::Refused,
    Kind::Timeout,
    Kind::DelayedWrite,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::ServerError => "5xx",
            Kind::Throttled => "429",
            Kind::LostResponse => "lost response",
            Kind::Refused => "connection refused",
            Kind::Timeout => "timeout past the deadline",
            Kind::DelayedWrite => "delayed write",
        }
    }
}

/// One case of the matrix: a call of a step, its occurrence among identical calls of the
/// step, and a fault kind.
#[derive(Debug, Clone)]
struct Case {
    step: usize,
    call: Call,
    skip: u32,
    kind: Kind,
}

impl Case {
    fn label(&self, steps: &[&str]) -> String {
        format!(
            "{} {} (occurrence {}) with {}",
            steps[self.step],
            self.call.describe(),
            self.skip,
            self.kind.name()
        )
    }
}

/// Every (call, occurrence, kind) of the recorded steps whose calls `keep` selects.
fn cases(steps: &[Vec<Call>], keep: impl Fn(&Call) -> bool) -> Vec<Case> {
    let mut out = Vec::new();
    for (step, calls) in steps.iter().enumerate() {
        for (i, call) in calls.iter().enumerate().filter(|(_, c)| keep(c)) {
            let skip = calls[..i].iter().filter(|c| *c == call).count() as u32;
            let store = !matches!(call, Call::Dynatrace { .. });
            for kind in KINDS
                .into_iter()
                .filter(|k| store || *k != Kind::DelayedWrite)
            {
                out.push(Case {
                    step,
                    call: call.clone(),
                    skip,
                    kind,
                });
            }
        }
    }
    out
}

/// Prints and checks the size of a matrix.
fn report(what: &str, cases: &[Case], at_least: usize) {
    let mut per_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for c in cases {
        *per_kind.entry(c.kind.name()).or_default() += 1;
    }
    println!(
        "fault matrix: {} cases ({what}: per fault kind {per_kind:?})",
        cases.len(),
    );
    assert!(
        cases.len() >= at_least,
        "{what}: the recorded call list is suspiciously short: {} cases",
        cases.len()
    );
}

/// The proxies through which a world's Dynatrace and store traffic flows.
struct Proxies {
    dynatrace: FaultProxy,
    store: FaultProxy,
}

/// Injects the fault of `case` (emulator rules, or proxy rules for the store side and for a
/// refused Dynatrace connection).
fn inject(case: &Case, emu: &dynatrace_emulator::Emulator, p: &Proxies, root: &str) {
    let times = match case.kind {
        Kind::ServerError | Kind::Throttled => PERSISTENT,
        // every attempt of one SDK call (standard mode: 3)
        Kind::DelayedWrite => 3,
        _ => 1,
    };
    match &case.call {
        Call::Dynatrace { method, path } => {
            let kind = match case.kind {
                Kind::ServerError => FaultKind::status(503),
                Kind::Throttled => FaultKind::throttled(1),
                Kind::LostResponse => FaultKind::LostResponse,
                Kind::DelayedWrite => unreachable!("delayed writes are store faults"),
                // through the proxy: it refuses, and it holds a request in a task of its own
                Kind::Refused | Kind::Timeout => {
                    let fault = if case.kind == Kind::Refused {
                        ProxyFault::Refuse
                    } else {
                        ProxyFault::Delay(PAST_DEADLINE)
                    };
                    let rule = ProxyRule::new(fault).method(method);
                    let rule = match path {
                        PathMatch::Exact(p) => rule.path(p),
                        PathMatch::Prefix(p) => rule.path_prefix(p),
                        PathMatch::Any => rule,
                    };
                    p.dynatrace.add_rule(rule.skip(case.skip).times(times));
                    return;
                }
            };
            emu.add_fault(
                FaultRule::new(method, path.clone(), kind)
                    .skip(case.skip)
                    .times(times),
            );
        }
        Call::SecretsManager { target } => {
            p.store.add_rule(
                ProxyRule::new(store_fault(case.kind, true))
                    .target(target)
                    .skip(case.skip)
                    .times(times),
            );
        }
        Call::Vault { method, path } => {
            p.store.add_rule(
                ProxyRule::new(store_fault(case.kind, false))
                    .method(method)
                    .path(&path.replace("{root}", root))
                    .skip(case.skip)
                    .times(times),
            );
        }
    }
}

fn store_fault(kind: Kind, aws: bool) -> ProxyFault {
    match kind {
        Kind::ServerError if aws => ProxyFault::Status(500),
        Kind::ServerError => ProxyFault::Status(503),
        // AWS throttles with 400 ThrottlingException, not 429
        Kind::Throttled if aws => ProxyFault::Status(400),
        Kind::Throttled => ProxyFault::Status(429),
        Kind::LostResponse => ProxyFault::LostResponse,
        Kind::Refused => ProxyFault::Refuse,
        Kind::Timeout => ProxyFault::Delay(PAST_DEADLINE),
        Kind::DelayedWrite => ProxyFault::Delay(DELAYED_WRITE),
    }
}

/// Clears every fault, after checking the injected one fired (`emu_before`: the length of
/// the emulator's request log at injection).
fn clear(case: &Case, emu: &dynatrace_emulator::Emulator, p: &Proxies, emu_before: usize) {
    let fired = match (&case.call, case.kind) {
        (Call::Dynatrace { .. }, Kind::ServerError | Kind::Throttled | Kind::LostResponse) => emu
            .requests()[emu_before..]
            .iter()
            .any(|r| matches!(r.status, None | Some(503) | Some(429))),
        (Call::Dynatrace { .. }, _) => p.dynatrace.fired() > 0,
        _ => p.store.fired() > 0,
    };
    assert!(fired, "{case:?}: the injected fault never fired");
    emu.clear_faults();
    p.dynatrace.clear();
    p.store.clear();
}

/// Runs the faulted invocation: normally, or — for a timeout — with a short deadline, killed
/// at it like Lambda would, and returning once the held request has reached the server.
async fn faulted_invoke(
    deps: &Deps,
    outputs: &RefCell<Vec<String>>,
    payload: Value,
    kind: Kind,
) -> Result<Value, String> {
    let started = tokio::time::Instant::now();
    let (budget, deadline) = if kind == Kind::Timeout {
        (SHORT_DEADLINE, Deadline::after(SHORT_DEADLINE))
    } else {
        (
            Duration::from_secs(60),
            Deadline::after(Duration::from_secs(60)),
        )
    };
    let out = tokio::time::timeout(budget, app::handle(deps, payload, deadline)).await;
    let out: Result<Value, String> = match out {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err("killed at the deadline".into()),
    };
    outputs.borrow_mut().push(match &out {
        Ok(v) => v.to_string(),
        Err(e) => e.clone(),
    });
    match kind {
        Kind::Timeout => {
            tokio::time::sleep_until(started + PAST_DEADLINE + Duration::from_millis(300)).await
        }
        // the held requests land before the caller's retries start
        Kind::DelayedWrite => tokio::time::sleep(DELAYED_WRITE).await,
        _ => {}
    }
    out
}

fn describe(e: &HandlerError) -> String {
    format!("{e} {e:?}")
}

/// A Secrets Manager client through `proxy`, with the SDK's standard retries (3 attempts)
/// but short back-off.
fn sm_client(proxy: &FaultProxy) -> aws_sdk_secretsmanager::Client {
    let base = secrets_manager::client(&proxy.url());
    let conf = base
        .config()
        .to_builder()
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(40)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(STORE_REQUEST_TIMEOUT)
                .build(),
        )
        .build();
    aws_sdk_secretsmanager::Client::from_conf(conf)
}

// ---------------------------------------------------------------------------------------
// Secrets Manager

/// A Secrets Manager world whose Dynatrace and Secrets Manager traffic goes through proxies;
/// returns (world, proxies, secret, current token id after a first rotation, version, the
/// token before it).
async fn sm_world() -> (World, Proxies, String, String, String, String) {
    let mut w = World::new(&[("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)]).await;
    let dynatrace = FaultProxy::start(&w.emu.url()).await;
    let store = FaultProxy::start(&Moto::shared().endpoint()).await;
    secrets_manager::update_value(
        &w.secrets_manager,
        &w.manager_secret,
        &json!({"environmentUrl": dynatrace.url(), "token": w.manager.value}).to_string(),
    )
    .await
    .expect("manager through the proxy");
    w.deps.secrets_manager = sm_client(&store);
    let token = w.emu.seed_token(SeedToken::new("app1 metrics", APP_SCOPES));
    let secret = w
        .secret_with(
            &json!({"environmentUrl": dynatrace.url(), "token": token.value, "team": "t"})
                .to_string(),
        )
        .await;
    // the measured rotation is the second, so finishSecret also revokes a token
    w.rotate(&secret).await;
    let current = w
        .token_id_at(&secret, secrets_manager::AWSCURRENT)
        .await
        .expect("rotated");
    assert_ne!(current, token.id);
    let version = w.begin(&secret).await;
    (
        w,
        Proxies { dynatrace, store },
        secret,
        current,
        version,
        token.id,
    )
}

fn step_event(secret: &str, version: &str, step: &str) -> Value {
    json!({"Step": step, "SecretId": secret, "ClientRequestToken": version, "RotationToken": ROTATION_TOKEN})
}

/// The calls of each step of a clean rotation, in order.
async fn record_sm_calls() -> Vec<Vec<Call>> {
    let (w, p, secret, _, version, _) = sm_world().await;
    let mut out = Vec::new();
    for step in STEPS {
        let (dt0, sm0) = (w.emu.requests().len(), p.store.calls().len());
        w.step(&secret, &version, step)
            .await
            .unwrap_or_else(|e| panic!("clean {step}: {e}"));
        let mut calls: Vec<Call> = w.emu.requests()[dt0..].iter().map(dynatrace_call).collect();
        calls.extend(p.store.calls()[sm0..].iter().map(sm_call));
        out.push(calls);
    }
    out
}

/// Runs one case; returns whether the faulted step failed.
async fn run_sm_case(case: &Case) -> bool {
    let label = case.label(&STEPS);
    let (w, p, secret, original, version, two_generations_old) = sm_world().await;
    for step in &STEPS[..case.step] {
        w.step(&secret, &version, step)
            .await
            .unwrap_or_else(|e| panic!("{label}: {step}: {e}"));
    }
    let emu_before = w.emu.requests().len();
    inject(case, &w.emu, &p, "");
    let faulted = faulted_invoke(
        &w.deps,
        &w.outputs,
        step_event(&secret, &version, STEPS[case.step]),
        case.kind,
    )
    .await;
    clear(case, &w.emu, &p, emu_before);
    let step_failed = faulted.is_err();
    let mut failed = step_failed;
    if !failed {
        for step in &STEPS[case.step + 1..] {
            if w.step(&secret, &version, step).await.is_err() {
                failed = true;
                break;
            }
        }
    }
    if failed {
        // Secrets Manager retries the rotation with the same version.
        w.retry_rotation(&secret, &version, &label).await;
    }
    let sweep = w
        .invoke(json!({"action": "sweep"}))
        .await
        .unwrap_or_else(|e| panic!("{label}: sweep: {e}"));
    let stages = w.stages(&secret).await;
    assert_eq!(
        stages[&version],
        vec![secrets_manager::AWSCURRENT],
        "{label}: {stages:?}"
    );
    w.assert_invariants(&secret).await;
    let live = w.live_minted();
    assert_eq!(
        live.len(),
        2,
        "{label}: live minted tokens (AWSCURRENT, AWSPREVIOUS) {live:?}"
    );
    assert!(
        w.token(&original).enabled,
        "{label}: the previous token must stay valid"
    );
    assert!(
        !w.token(&two_generations_old).enabled,
        "{label}: the token two generations old must be revoked in the end"
    );
    let doc = w.doc(&secret, secrets_manager::AWSCURRENT).await.unwrap();
    assert_eq!(doc["team"], "t", "{label}: data lost");
    assert!(
        sweep["disabled"].as_array().is_some_and(Vec::is_empty),
        "{label}: the sweep disabled a token: {sweep}"
    );
    w.assert_no_leaks();
    // keep moto small: the sweep lists every secret of the function
    let _ = w
        .secrets_manager
        .delete_secret()
        .secret_id(&secret)
        .force_delete_without_recovery(true)
        .send()
        .await;
    step_failed
}

async fn sm_matrix(what: &str, keep: impl Fn(&Call) -> bool, at_least: usize) {
    let steps = record_sm_calls().await;
    let cases = cases(&steps, keep);
    report(what, &cases, at_least);
    let mut failed = 0;
    for case in &cases {
        failed += usize::from(run_sm_case(case).await);
    }
    println!(
        "{what}: the faulted step failed in {failed} of {} cases; the rest absorbed the fault",
        cases.len()
    );
}

#[tokio::test]
async fn secrets_manager_rotation_dynatrace_calls() {
    sm_matrix(
        "Secrets Manager rotation, Dynatrace calls",
        // eight calls (tests/secrets_manager.rs::a_rotation_makes_eight_dynatrace_calls), five
        // fault kinds each
        |c| matches!(c, Call::Dynatrace { .. }),
        40,
    )
    .await;
}

#[tokio::test]
async fn secrets_manager_rotation_secrets_manager_calls() {
    sm_matrix(
        "Secrets Manager rotation, Secrets Manager calls",
        |c| matches!(c, Call::SecretsManager { .. }),
        105,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Vault

/// A Vault world with two paths, whose Dynatrace and Vault traffic goes through proxies;
/// returns (world, proxies, paths, token ids current after a first run, the tokens before
/// them).
async fn vault_world() -> (VaultWorld, Proxies, Vec<String>, Vec<String>, Vec<String>) {
    let store = FaultProxy::start(&Bao::shared().addr()).await;
    let mut w = VaultWorld::new(&[("VAULT_ADDR", &store.url())]).await;
    let dynatrace = FaultProxy::start(&w.emu.url()).await;
    w.bao
        .kv_put(
            "secret",
            &format!("{}/dynatrace/master", w.root),
            &json!({"environmentUrl": dynatrace.url(), "token": w.manager.value}),
        )
        .await
        .expect("manager through the proxy");
    let (a, ta) = w.app("app1", json!({"keep": "me"})).await;
    let (b, tb) = w.app("app2", json!({"keep": "me"})).await;
    let paths = vec![a, b];
    let backend = w.deps.vault.as_mut().unwrap();
    backend.config.rotate_paths = paths.clone();
    // A delayed write must outlast one attempt, as it would outlast the default 10 s.
    backend.kv = backend.kv.with_request_timeout(STORE_REQUEST_TIMEOUT);
    // the measured run is the second, so it also revokes the tokens two generations old
    let out = w
        .invoke(rotate_event(&paths, true))
        .await
        .expect("first run");
    assert_eq!(out["rotated"], 2, "first run: {out}");
    let mut current = Vec::new();
    for p in &paths {
        current.push(w.token_id(p).await);
    }
    assert!(current[0] != ta.id && current[1] != tb.id);
    (
        w,
        Proxies { dynatrace, store },
        paths,
        current,
        vec![ta.id, tb.id],
    )
}

fn rotate_event(paths: &[String], force: bool) -> Value {
    json!({"action": "rotate-vault", "paths": paths, "force": force})
}

/// The calls of a clean forced run over two paths, in order (one step).
async fn record_vault_calls() -> Vec<Vec<Call>> {
    let (w, p, paths, _, _) = vault_world().await;
    let (dt0, v0) = (w.emu.requests().len(), p.store.calls().len());
    let out = w
        .invoke(rotate_event(&paths, true))
        .await
        .expect("clean run");
    assert_eq!(out["failed"], 0, "clean run: {out}");
    let mut calls: Vec<Call> = w.emu.requests()[dt0..].iter().map(dynatrace_call).collect();
    calls.extend(p.store.calls()[v0..].iter().map(|c| vault_call(c, &w.root)));
    vec![calls]
}

/// Runs one case; returns whether the faulted run failed (as a whole or for a path).
async fn run_vault_case(case: &Case) -> bool {
    let label = case.label(&["rotate-vault"]);
    let (w, p, paths, originals, two_generations_old) = vault_world().await;
    let emu_before = w.emu.requests().len();
    inject(case, &w.emu, &p, &w.root);
    let faulted = faulted_invoke(&w.deps, &w.outputs, rotate_event(&paths, true), case.kind).await;
    let run_failed = faulted.as_ref().is_ok_and(|v| v["failed"] != 0) || faulted.is_err();
    clear(case, &w.emu, &p, emu_before);
    // The schedule runs again: forced for a path the faulted run did not write (it was
    // forced), then as scheduled; then the sweep.
    let mut unwritten = Vec::new();
    for path in &paths {
        if w.read(path).await.0 == 2 {
            unwritten.push(path.clone());
        }
    }
    if !unwritten.is_empty() {
        let out = w
            .invoke(rotate_event(&unwritten, true))
            .await
            .unwrap_or_else(|e| panic!("{label}: forced retry: {e}"));
        assert_eq!(out["failed"], 0, "{label}: forced retry: {out}");
    }
    let out = w
        .invoke(rotate_event(&paths, false))
        .await
        .unwrap_or_else(|e| panic!("{label}: scheduled run: {e}"));
    assert_eq!(out["failed"], 0, "{label}: scheduled run: {out}");
    let sweep = w
        .invoke(json!({"action": "sweep"}))
        .await
        .unwrap_or_else(|e| panic!("{label}: sweep: {e}"));
    assert_eq!(sweep["errors"], json!([]), "{label}: sweep: {sweep}");
    // A mint request that timed out reaches Dynatrace after the run minted, stored and
    // proved a replacement: the sweep disables that late token (its marker names a version
    // already stored), whatever its age. Every other case leaves nothing for the sweep.
    let late_mint = case.kind == Kind::Timeout
        && case.call
            == (Call::Dynatrace {
                method: "POST".into(),
                path: PathMatch::Exact("/api/v2/apiTokens".into()),
            });
    // A revocation the faulted run left undone is finished by the sweep (the tokens two
    // generations old); nothing else may be disabled.
    let disabled = sweep["disabled"].as_array().map_or(0, |d| {
        d.iter()
            .filter(|id| !two_generations_old.iter().any(|o| id.as_str() == Some(o)))
            .count()
    });
    if late_mint {
        assert!(disabled <= 1, "{label}: sweep: {sweep}");
    } else {
        assert_eq!(disabled, 0, "{label}: sweep: {sweep}");
    }
    w.assert_invariants(&paths).await;
    for (path, original) in paths.iter().zip(&originals) {
        let (version, doc) = w.read(path).await;
        assert!(version >= 3, "{label}: {path} was not rotated again");
        assert_eq!(doc["keep"], "me", "{label}: {path}: data lost");
        assert!(
            w.token(original).enabled,
            "{label}: {path}: the previous token must stay valid"
        );
    }
    for old in &two_generations_old {
        assert!(
            !w.token(old).enabled,
            "{label}: the token two generations old ({old}) must be revoked in the end"
        );
    }
    let live = w.live_minted();
    assert_eq!(
        live.len(),
        4,
        "{label}: live minted tokens (latest and previous of 2 paths) {live:?}"
    );
    w.assert_no_leaks();
    run_failed
}

async fn vault_matrix(what: &str, keep: impl Fn(&Call) -> bool, at_least: usize) {
    let steps = record_vault_calls().await;
    let cases = cases(&steps, keep);
    report(what, &cases, at_least);
    let mut failed = 0;
    for case in &cases {
        failed += usize::from(run_vault_case(case).await);
    }
    println!(
        "{what}: the faulted run failed a path in {failed} of {} cases; the rest absorbed the fault",
        cases.len()
    );
}

#[tokio::test]
async fn vault_run_dynatrace_calls() {
    vault_matrix(
        "Vault run of 2 paths, Dynatrace calls",
        |c| matches!(c, Call::Dynatrace { .. }),
        35,
    )
    .await;
}

#[tokio::test]
async fn vault_run_vault_requests() {
    vault_matrix(
        "Vault run of 2 paths, Vault requests",
        |c| matches!(c, Call::Vault { .. }),
        30,
    )
    .await;
}
