//! Shared fixture of the integration tests: the emulator in-process, the shared
//! `moto_server`, a seeded manager token, the handler's dependencies with fast retries,
//! a log capture, and the inspectors the invariants are checked with.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_secretsmanager::Client as SecretsManagerClient;
use dynatrace_emulator::{Emulator, SeedToken, Seeded, TokenState};
use dynatrace_token_rotator::app::{self, Deps, HandlerError};
use dynatrace_token_rotator::config::Config;
use dynatrace_token_rotator::deadline::Deadline;
use dynatrace_token_rotator::dynatrace::{Dynatrace, RetrySettings};
use dynatrace_token_rotator::{logging, marker};
use rotator_sandbox::secrets_manager::{self, STEPS};
use rotator_sandbox::{LogCapture, Moto};
use serde_json::{Value, json};

/// Scopes of the manager token.
pub const MANAGER_SCOPES: &[&str] = &["apiTokens.read", "apiTokens.write", "events.ingest"];
/// Scopes of the application token the tests rotate.
pub const APP_SCOPES: &[&str] = &["metrics.read", "metrics.ingest", "logs.ingest"];
/// The RotationToken the tests send (must never be logged).
pub const ROTATION_TOKEN: &str = "RT-opaque-7a1f9c2e-NEVER-LOG-ME";

/// Retry settings that keep tests fast but still exercise every retry path.
pub fn fast_retries() -> RetrySettings {
    RetrySettings {
        max_attempts: 4,
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
        max_retry_after: Duration::from_millis(60),
        request_timeout: Duration::from_secs(5),
    }
}

/// One test's world: emulator, moto, manager, handler dependencies, logs.
pub struct World {
    pub emu: Emulator,
    pub secrets_manager: SecretsManagerClient,
    pub manager: Seeded,
    pub manager_secret: String,
    pub deps: Deps,
    pub logs: LogCapture,
    _guard: tracing::subscriber::DefaultGuard,
    /// Everything the handler answered (responses and errors), for the leak check.
    pub outputs: std::cell::RefCell<Vec<String>>,
}

impl World {
    /// A world with the default configuration plus `vars`.
    pub async fn new(vars: &[(&str, &str)]) -> World {
        Self::with_retries(vars, fast_retries()).await
    }

    /// A world with explicit retry settings.
    pub async fn with_retries(vars: &[(&str, &str)], retries: RetrySettings) -> World {
        let (guard, logs) = LogCapture::install_with_filter(&logging::directives("trace"));
        let emu = Emulator::start().await;
        let moto = Moto::shared();
        let sm = moto.client();
        let manager = emu.seed_token(SeedToken::new("rotator manager", MANAGER_SCOPES));
        let manager_secret = format!("dynatrace/manager-{}", rotator_sandbox::unique_suffix());
        secrets_manager::create_secret(
            &sm,
            &manager_secret,
            &json!({"environmentUrl": emu.url(), "token": manager.value}).to_string(),
        )
        .await
        .expect("create manager secret");
        let mut map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("DT_MANAGER_SECRET_IDS".into())
            .or_insert_with(|| manager_secret.clone());
        let config =
            Config::from_lookup(|k| map.get(k).cloned()).expect("valid test configuration");
        let in_flight = config.rotation_concurrency;
        let deps = Deps {
            config,
            secrets_manager: sm.clone(),
            sqs: moto.sqs_client(),
            dynatrace: Dynatrace::new(retries)
                .expect("http client")
                .with_max_in_flight(in_flight),
            vault: None,
        };
        World {
            emu,
            secrets_manager: sm,
            manager,
            manager_secret,
            deps,
            logs,
            _guard: guard,
            outputs: Default::default(),
        }
    }

    /// Seeds an application token and a secret holding it (plus `extra` fields); returns
    /// (secret name, token).
    pub async fn app_secret(&self, extra: Value) -> (String, Seeded) {
        let token = self
            .emu
            .seed_token(SeedToken::new("app1 metrics", APP_SCOPES));
        let mut doc = json!({"environmentUrl": self.emu.url(), "token": token.value});
        if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                d.insert(k.clone(), v.clone());
            }
        }
        let name = self.secret_with(&doc.to_string()).await;
        (name, token)
    }

    /// Creates a secret with exactly `value`; returns its name.
    pub async fn secret_with(&self, value: &str) -> String {
        let name = format!("dynatrace/app-{}", rotator_sandbox::unique_suffix());
        secrets_manager::create_secret(&self.secrets_manager, &name, value)
            .await
            .expect("create secret");
        name
    }

    /// Puts the secret into the pending state, as Secrets Manager does before `createSecret`.
    pub async fn begin(&self, secret: &str) -> String {
        secrets_manager::begin_rotation(&self.secrets_manager, secret, secrets_manager::LAMBDA_ARN)
            .await
            .expect("begin rotation")
    }

    /// Invokes the handler with a raw payload.
    pub async fn invoke(&self, payload: Value) -> Result<Value, HandlerError> {
        let out = app::handle(
            &self.deps,
            payload,
            Deadline::after(Duration::from_secs(60)),
        )
        .await;
        self.outputs.borrow_mut().push(match &out {
            Ok(v) => v.to_string(),
            Err(e) => format!("{e} {e:?}"),
        });
        out
    }

    /// Invokes one step of the rotation of `secret` at `version`.
    pub async fn step(
        &self,
        secret: &str,
        version: &str,
        step: &str,
    ) -> Result<Value, HandlerError> {
        self.invoke(json!({"Step": step, "SecretId": secret, "ClientRequestToken": version, "RotationToken": ROTATION_TOKEN}))
            .await
    }

    /// Runs the four steps in order, failing the test on any error.
    pub async fn steps(&self, secret: &str, version: &str) {
        for step in STEPS {
            self.step(secret, version, step)
                .await
                .unwrap_or_else(|e| panic!("{step} failed: {e}"));
        }
    }

    /// Retries the rotation of `secret` at `version` after a failed (or crashed) step, the way
    /// Secrets Manager does, with the same version: when `version` already carries AWSCURRENT
    /// (the label moved before the failure) only `finishSecret` runs again, else all four
    /// steps from `createSecret`. Fails the test on any error, naming `label` and the step.
    pub async fn retry_rotation(&self, secret: &str, version: &str, label: &str) {
        let moved = self
            .stages(secret)
            .await
            .get(version)
            .is_some_and(|s| s.iter().any(|l| l == secrets_manager::AWSCURRENT));
        let steps: &[&str] = if moved { &["finishSecret"] } else { &STEPS };
        for step in steps {
            self.step(secret, version, step)
                .await
                .unwrap_or_else(|e| panic!("{label}: retry {step}: {e}"));
        }
    }

    /// Begins and completes a rotation; returns the version.
    pub async fn rotate(&self, secret: &str) -> String {
        let version = self.begin(secret).await;
        self.steps(secret, &version).await;
        version
    }

    /// The secret's version → labels map.
    pub async fn stages(&self, secret: &str) -> BTreeMap<String, Vec<String>> {
        secrets_manager::stages(&self.secrets_manager, secret)
            .await
            .expect("stages")
    }

    /// The parsed document under `stage`.
    pub async fn doc(&self, secret: &str, stage: &str) -> Option<Value> {
        secrets_manager::value_at(&self.secrets_manager, secret, stage)
            .await
            .expect("value")
            .map(|s| serde_json::from_str(&s).unwrap_or(Value::String(s)))
    }

    /// The token id stored under `stage`.
    pub async fn token_id_at(&self, secret: &str, stage: &str) -> Option<String> {
        let doc = self.doc(secret, stage).await?;
        let value = doc
            .get("token")
            .and_then(Value::as_str)
            .or(doc.as_str())?
            .to_owned();
        Some(value[..value.rfind('.')?].to_owned())
    }

    /// Changes token `id` the way a person would in Dynatrace (`PUT` with the manager token):
    /// `body` is the update (`enabled`, `name`, `scopes`).
    pub async fn edit_by_hand(&self, id: &str, body: Value) {
        let status = reqwest::Client::new()
            .put(format!("{}/api/v2/apiTokens/{id}", self.emu.url()))
            .header("Authorization", format!("Api-Token {}", self.manager.value))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "editing {id} by hand: {status}");
    }

    /// The emulator's token `id`.
    pub fn token(&self, id: &str) -> TokenState {
        self.emu
            .token(id)
            .unwrap_or_else(|| panic!("token {id} does not exist"))
    }

    /// Tokens the rotator minted (carrying a marker), live or not.
    pub fn minted(&self) -> Vec<TokenState> {
        self.emu
            .tokens()
            .into_iter()
            .filter(|t| marker::is_minted(&t.name))
            .collect()
    }

    /// Enabled tokens the rotator minted.
    pub fn live_minted(&self) -> Vec<TokenState> {
        live_minted(&self.emu)
    }

    /// docs/design.md §3 invariants for a Secrets Manager secret: AWSCURRENT live and enabled;
    /// every labelled token not revoked; no live minted token that no label references.
    pub async fn assert_invariants(&self, secret: &str) {
        let current = self
            .token_id_at(secret, secrets_manager::AWSCURRENT)
            .await
            .expect("AWSCURRENT has a token");
        let t = self.token(&current);
        assert!(t.enabled, "AWSCURRENT token {current} is disabled");
        let mut referenced = vec![current];
        for stage in [secrets_manager::AWSPREVIOUS, secrets_manager::AWSPENDING] {
            if let Some(id) = self.token_id_at(secret, stage).await {
                let t = self
                    .emu
                    .token(&id)
                    .unwrap_or_else(|| panic!("{stage} token {id} was deleted"));
                assert!(t.enabled, "{stage} token {id} is disabled");
                referenced.push(id);
            }
        }
        assert_no_orphans(&self.emu, &referenced);
    }

    /// No token value the emulator ever issued, and no RotationToken, in any log line or
    /// handler output of this test.
    pub fn assert_no_leaks(&self) {
        let mut secrets = self.emu.issued_values();
        secrets.push(ROTATION_TOKEN.to_owned());
        assert_secret_free(&self.logs, &self.outputs.borrow(), &secrets);
    }
}

/// A Vault test world: the emulator, the shared OpenBao dev server, a manager document at
/// a path unique to the test, and handler dependencies configured for Vault.
pub struct VaultWorld {
    pub emu: Emulator,
    pub bao: &'static rotator_sandbox::Bao,
    pub manager: Seeded,
    /// Unique folder of this test under the `secret` mount.
    pub root: String,
    pub deps: Deps,
    pub logs: LogCapture,
    _guard: tracing::subscriber::DefaultGuard,
    pub outputs: std::cell::RefCell<Vec<String>>,
    /// Extra secrets (Vault tokens, secret ids) that must not leak.
    pub secrets: Vec<String>,
}

impl VaultWorld {
    /// The marker scope of this world's deployment (server, namespace, mount).
    pub fn scope(&self) -> dynatrace_token_rotator::marker::VaultScope {
        self.deps.vault.as_ref().expect("vault configured").scope()
    }

    /// A world authenticating with the root token, plus `vars`.
    pub async fn new(vars: &[(&str, &str)]) -> VaultWorld {
        Self::with_retries(vars, fast_retries()).await
    }

    /// With explicit Dynatrace retry settings.
    pub async fn with_retries(vars: &[(&str, &str)], retries: RetrySettings) -> VaultWorld {
        let (guard, logs) = LogCapture::install_with_filter(&logging::directives("trace"));
        let emu = Emulator::start().await;
        let bao = rotator_sandbox::Bao::shared();
        let root = format!("t-{}", rotator_sandbox::unique_suffix());
        let manager = emu.seed_token(SeedToken::new("rotator manager", MANAGER_SCOPES));
        bao.kv_put(
            "secret",
            &format!("{root}/dynatrace/master"),
            &json!({"environmentUrl": emu.url(), "token": manager.value}),
        )
        .await
        .expect("seed manager");
        let mut map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("VAULT_ADDR".into()).or_insert_with(|| bao.addr());
        map.entry("VAULT_TOKEN".into())
            .or_insert_with(|| bao.root_token().to_owned());
        map.entry("VAULT_MANAGER_PATH".into())
            .or_insert_with(|| format!("{root}/dynatrace/master"));
        let mut secrets: Vec<String> = vec![bao.root_token().to_owned()];
        secrets.extend(map.get("VAULT_SECRET_ID").cloned());
        secrets.extend(map.get("VAULT_TOKEN").cloned());
        let config =
            Config::from_lookup(|k| map.get(k).cloned()).expect("valid test configuration");
        let backend = dynatrace_token_rotator::vault::rotate::VaultBackend::new(
            config.vault.as_ref().unwrap(),
            None,
        )
        .expect("vault backend");
        let in_flight = config.rotation_concurrency;
        let deps = Deps {
            config,
            secrets_manager: Moto::shared().client(),
            sqs: Moto::shared().sqs_client(),
            dynatrace: Dynatrace::new(retries)
                .expect("http client")
                .with_max_in_flight(in_flight),
            vault: Some(backend),
        };
        VaultWorld {
            emu,
            bao,
            manager,
            root,
            deps,
            logs,
            _guard: guard,
            outputs: Default::default(),
            secrets,
        }
    }

    /// Full KV path of `name` inside this test's folder.
    pub fn path(&self, name: &str) -> String {
        format!("{}/dynatrace/{name}", self.root)
    }

    /// Seeds a token and stores it at `name` the way the original script's users do
    /// (`{"token": ...}` plus `extra`); returns (path, token).
    pub async fn app(&self, name: &str, extra: Value) -> (String, Seeded) {
        let token = self
            .emu
            .seed_token(SeedToken::new(&format!("{name} token"), APP_SCOPES));
        let mut doc = json!({"token": token.value});
        if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                d.insert(k.clone(), v.clone());
            }
        }
        let path = self.path(name);
        self.bao
            .kv_put("secret", &path, &doc)
            .await
            .expect("seed secret");
        (path, token)
    }

    /// Invokes the handler with a raw payload.
    pub async fn invoke(&self, payload: Value) -> Result<Value, HandlerError> {
        let out = app::handle(
            &self.deps,
            payload,
            Deadline::after(Duration::from_secs(120)),
        )
        .await;
        self.outputs.borrow_mut().push(match &out {
            Ok(v) => v.to_string(),
            Err(e) => format!("{e} {e:?}"),
        });
        out
    }

    /// `rotate-vault` on explicit paths.
    pub async fn rotate(&self, paths: &[&str], force: bool, dry_run: bool) -> Value {
        self.invoke(
            json!({"action": "rotate-vault", "paths": paths, "force": force, "dryRun": dry_run}),
        )
        .await
        .unwrap_or_else(|e| panic!("rotate-vault failed: {e}"))
    }

    /// Latest (version, document) at `path`.
    pub async fn read(&self, path: &str) -> (u64, Value) {
        self.bao
            .kv_get("secret", path)
            .await
            .expect("read")
            .expect("present")
    }

    /// Token id of the latest document at `path`.
    pub async fn token_id(&self, path: &str) -> String {
        let (_, doc) = self.read(path).await;
        let v = doc["token"].as_str().unwrap();
        v[..v.rfind('.').unwrap()].to_owned()
    }

    /// The emulator's token `id`.
    pub fn token(&self, id: &str) -> TokenState {
        self.emu
            .token(id)
            .unwrap_or_else(|| panic!("token {id} does not exist"))
    }

    /// Enabled tokens the rotator minted.
    pub fn live_minted(&self) -> Vec<TokenState> {
        live_minted(&self.emu)
    }

    /// docs/design.md §3 invariants for the Vault `paths`: latest token live and enabled, its
    /// `previousTokenId` not revoked (next-rotation policy), no live minted token that no
    /// path references.
    pub async fn assert_invariants(&self, paths: &[String]) {
        let mut referenced = Vec::new();
        for p in paths {
            let (_, doc) = self.read(p).await;
            let id = self.token_id(p).await;
            assert!(
                self.token(&id).enabled,
                "{p}: latest token {id} is not enabled"
            );
            referenced.push(id);
            if let Some(prev) = doc["previousTokenId"].as_str() {
                assert!(
                    self.token(prev).enabled,
                    "{p}: previous token {prev} revoked too early"
                );
                referenced.push(prev.to_owned());
            }
        }
        assert_no_orphans(&self.emu, &referenced);
    }

    /// No token value, Vault token or secret id in any log line or output of this test.
    pub fn assert_no_leaks(&self) {
        let mut secrets = self.emu.issued_values();
        secrets.extend(self.secrets.iter().cloned());
        assert_secret_free(&self.logs, &self.outputs.borrow(), &secrets);
    }
}

/// Enabled tokens of `emu` that the rotator minted (their names carry its marker).
pub fn live_minted(emu: &Emulator) -> Vec<TokenState> {
    emu.tokens()
        .into_iter()
        .filter(|t| t.enabled && marker::is_minted(&t.name))
        .collect()
}

/// Fails when a live minted token is not among the `referenced` ids.
fn assert_no_orphans(emu: &Emulator, referenced: &[String]) {
    let orphans: Vec<String> = live_minted(emu)
        .into_iter()
        .filter(|t| !referenced.contains(&t.id))
        .map(|t| t.id)
        .collect();
    assert!(
        orphans.is_empty(),
        "live minted tokens nothing references: {orphans:?}"
    );
}

/// Fails when any of `secrets`, or the secret part of a token value, occurs in the captured
/// logs or in the handler's `outputs`.
fn assert_secret_free(logs: &LogCapture, outputs: &[String], secrets: &[String]) {
    let mut haystack = logs.text();
    assert!(
        !haystack.is_empty(),
        "no log line was captured: the leak check would be vacuous"
    );
    for o in outputs {
        haystack.push_str(o);
    }
    assert!(
        !secrets.is_empty(),
        "nothing to look for: the leak check would be vacuous"
    );
    for value in secrets {
        assert!(
            !haystack.contains(value.as_str()),
            "a secret value leaked into logs or outputs"
        );
        if let Some(secret_part) = value
            .rsplit('.')
            .next()
            .filter(|p| p.len() >= 20 && *p != value)
        {
            assert!(
                !haystack.contains(secret_part),
                "a token's secret part leaked"
            );
        }
    }
}
