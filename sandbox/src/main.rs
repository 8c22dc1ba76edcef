//! `sandbox`: the local demo of the rotator.
//!
//! `sandbox demo` rotates a Dynatrace token held in (emulated) AWS Secrets Manager with the real
//! Lambda binary under `cargo lambda watch`: the Dynatrace emulator runs in this process,
//! `moto_server` as a child process; the four rotation steps are invoked with
//! `cargo lambda invoke`, then the result is reported. Token values are never printed.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use dynatrace_emulator::{Emulator, SeedToken, TokenState};
use rotator_sandbox::secrets_manager::{
    self, AWSCURRENT, AWSPENDING, AWSPREVIOUS, LAMBDA_ARN, STEPS,
};
use rotator_sandbox::{Bao, CargoLambda, Error, Moto, Result, token_document, workspace_root};
use serde_json::Value;

mod bench;

const MANAGER_SECRET: &str = "dynatrace/manager";
const APP_SECRET: &str = "dynatrace/app1";
const APP_TOKEN_NAME: &str = "app1 metrics";
const APP_SCOPES: [&str; 3] = ["metrics.read", "metrics.ingest", "logs.ingest"];
const MANAGER_SCOPES: [&str; 2] = ["apiTokens.read", "apiTokens.write"];
const VAULT_MANAGER_PATH: &str = "dynatrace/master";
const VAULT_APPS: [(&str, &str); 3] = [
    ("dynatrace/app-a", "app-a ingest"),
    ("dynatrace/app-b", "app-b ingest"),
    ("dynatrace/team-x/app-c", "app-c ingest"),
];

fn usage() -> ExitCode {
    eprintln!(
        "usage: sandbox demo\n\n\
         bench [fleet|tenant]  measure the release binary against a tenant serving 16\n       \
         requests at once at 20 ms: init and cold start, 200- and 2,000-path Vault runs, enqueue-vault + SQS, the calls of a\n       \
         Secrets Manager rotation, sweep and audit of 10,000 tokens / 1,000 secrets, peak RSS\n       \
         demo   rotate a Dynatrace token held in moto (Secrets Manager) with the Lambda binary\n       \
         under `cargo lambda watch`, against the Dynatrace emulator, and report the result\n\n\
         Run it through scripts/demo.sh, which installs the tools first."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["demo"] => {}
        ["bench"] => return run(bench::bench(bench::Phases::All)),
        ["bench", "fleet"] => return run(bench::bench(bench::Phases::Fleet)),
        ["bench", "tenant"] => return run(bench::bench(bench::Phases::Tenant)),
        _ => return usage(),
    }
    run(demo())
}

/// Runs `work` on a multi-threaded runtime and maps its outcome to an exit code.
fn run(work: impl std::future::Future<Output = Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\ndemo FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a numbered progress line.
fn say(step: &str) {
    println!("==> {step}");
}

async fn demo() -> Result<()> {
    say("building the rotator (dynatrace-token-rotator; the first build takes a few minutes)");
    build_rotator(false).await?;

    say("starting the Dynatrace emulator");
    let emulator = Emulator::start().await;
    let dt_url = emulator.url();
    let manager = emulator.seed_token(SeedToken::new("token rotator manager", &MANAGER_SCOPES));
    let app = emulator.seed_token(SeedToken::new(APP_TOKEN_NAME, &APP_SCOPES));
    println!(
        "    {dt_url}: manager token {}, app token {}",
        manager.id, app.id
    );

    say("starting moto_server (Secrets Manager)");
    let moto = tokio::task::spawn_blocking(Moto::start)
        .await
        .map_err(|e| Error::new(format!("moto start-up task failed: {e}")))??;
    let client = moto.client();
    let manager_doc = token_document(&dt_url, &manager.value, &[]);
    secrets_manager::create_secret(&client, MANAGER_SECRET, &manager_doc).await?;
    let app_doc = token_document(&dt_url, &app.value, &[("team", "payments")]);
    secrets_manager::create_secret(&client, APP_SECRET, &app_doc).await?;
    println!(
        "    {}: secrets {MANAGER_SECRET} and {APP_SECRET}",
        moto.endpoint()
    );

    say("starting OpenBao (bao server -dev) as Vault");
    let bao = tokio::task::spawn_blocking(Bao::start)
        .await
        .map_err(|e| Error::new(format!("OpenBao start-up task failed: {e}")))??;
    let manager_json: Value = serde_json::from_str(&manager_doc)?;
    bao.kv_put("secret", VAULT_MANAGER_PATH, &manager_json)
        .await?;
    let mut vault_apps = Vec::new();
    for (path, name) in VAULT_APPS {
        let token = emulator.seed_token(SeedToken::new(name, &["metrics.read", "entities.read"]));
        // the way the original script's users store them: `secret/dynatrace/...`, field `token`
        bao.kv_put("secret", path, &serde_json::json!({ "token": token.value }))
            .await?;
        vault_apps.push((path, token));
    }
    println!(
        "    {}: manager at secret/{VAULT_MANAGER_PATH}, {} app secrets under secret/dynatrace/",
        bao.addr(),
        vault_apps.len()
    );

    say("starting `cargo lambda watch`");
    let lambda = start_function(
        &moto,
        &bao,
        &[("RUST_LOG", "info"), ("VAULT_ROTATE_PREFIX", "dynatrace/")],
        false,
    )
    .await
    .map_err(|e| Error::new(format!("cargo lambda start-up task failed: {e}")))??;
    println!(
        "    invoke port {}; function logs in {}",
        lambda.port(),
        lambda.log_path().display()
    );

    // Two rotations: the first shows the overlap (the old token stays valid as AWSPREVIOUS),
    // the second the revocation of the token two generations old.
    let (v0, v1) = rotate(&client, &lambda, 1).await?;
    let gen1 = current_token_id(&client).await?;
    println!("    round 1: {} -> {gen1}", app.id);
    let (_, v2) = rotate(&client, &lambda, 2).await?;

    say("result");
    let mut report = report(&client, &emulator, [&app.id, &gen1], [&v0, &v1, &v2]).await;
    if report.is_ok() {
        report = vault_rotation(&bao, &lambda, &emulator, &vault_apps).await;
    }
    if report.is_ok() {
        report = leak_response(&bao, &lambda, &emulator, &vault_apps).await;
    }
    if report.is_ok() {
        // every token value the emulator ever issued (seeded and minted), and the Vault token
        let mut secrets = emulator.issued_values();
        secrets.push(bao.root_token().to_string());
        report = check_log_is_secret_free(&client, &lambda, &secrets).await;
    }
    drop(lambda);
    drop(bao);
    drop(moto);
    emulator.shutdown();
    report
}

/// One rotation as Secrets Manager runs it: `RotateSecret` (new version labelled AWSPENDING),
/// then the four steps through `cargo lambda invoke`. Returns (previous, new) version ids.
async fn rotate(
    client: &aws_sdk_secretsmanager::Client,
    lambda: &CargoLambda,
    round: u32,
) -> Result<(String, String)> {
    say(&format!(
        "rotation {round} of {APP_SECRET}: RotateSecret creates a version labelled AWSPENDING"
    ));
    let previous = secrets_manager::version_with(client, APP_SECRET, AWSCURRENT)
        .await?
        .ok_or_else(|| Error::new("the secret has no AWSCURRENT version"))?;
    let version = secrets_manager::begin_rotation(client, APP_SECRET, LAMBDA_ARN).await?;
    println!("    pending version {version}");
    for step in STEPS {
        say(&format!("cargo lambda invoke: {step}"));
        let payload = serde_json::json!({
            "Step": step,
            "SecretId": APP_SECRET,
            "ClientRequestToken": version,
        })
        .to_string();
        match lambda.invoke(&payload).await {
            Ok(response) => println!("    ok {}", one_line(&response)),
            Err(e) => {
                return Err(Error::new(format!(
                    "step {step} of rotation {round} failed: {e}\n---- function log (tail) ----\n{}",
                    lambda.log_tail()
                )));
            }
        }
    }
    Ok((previous, version))
}

/// The parsed document under `stage` (never printed whole: it holds the token value).
async fn document_at(client: &aws_sdk_secretsmanager::Client, stage: &str) -> Result<Value> {
    let text = secrets_manager::value_at(client, APP_SECRET, stage)
        .await?
        .ok_or_else(|| Error::new(format!("{APP_SECRET} has no {stage} value")))?;
    serde_json::from_str(&text).map_err(|_| {
        Error::new(format!(
            "the {stage} value of {APP_SECRET} is not a JSON document"
        ))
    })
}

/// Fails when any token value (manager, original, or one minted by the rotations) occurs in the
/// output of `cargo lambda watch`, which holds the function's logs.
async fn check_log_is_secret_free(
    client: &aws_sdk_secretsmanager::Client,
    lambda: &CargoLambda,
    known: &[String],
) -> Result<()> {
    let mut values: Vec<String> = known.iter().map(|v| v.to_string()).collect();
    for stage in [AWSCURRENT, AWSPREVIOUS] {
        if let Some(token) = document_at(client, stage).await?["token"].as_str() {
            values.push(token.to_string());
        }
    }
    let log = std::fs::read_to_string(lambda.log_path())?;
    let leaked = values.iter().filter(|v| log.contains(v.as_str())).count();
    if leaked == 0 {
        println!(
            "  OK: none of the {} token values occurs in the function log ({} lines)",
            values.len(),
            log.lines().count()
        );
        Ok(())
    } else {
        Err(Error::new(format!(
            "{leaked} token value(s) occur in the function log {}",
            lambda.log_path().display()
        )))
    }
}

/// `tokenId` of the AWSCURRENT document.
async fn current_token_id(client: &aws_sdk_secretsmanager::Client) -> Result<String> {
    let document = document_at(client, AWSCURRENT).await?;
    document["tokenId"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::new("the AWSCURRENT document has no tokenId"))
}

/// Builds the rotator binary (release for the bench) with the profile `cargo lambda watch`
/// then uses, so the watch process starts it at once; returns its path (`CARGO_TARGET_DIR`
/// honoured).
async fn build_rotator(release: bool) -> Result<std::path::PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut args = vec!["build", "--quiet"];
    if release {
        args.push("--release");
    }
    args.extend([
        "-p",
        "dynatrace-token-rotator",
        "--bin",
        "dynatrace-token-rotator",
    ]);
    let status = tokio::process::Command::new(cargo)
        .args(&args)
        .current_dir(workspace_root())
        .status()
        .await?;
    if !status.success() {
        return Err(Error::new(format!(
            "building dynatrace-token-rotator failed ({status})"
        )));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let profile = if release { "release" } else { "debug" };
    Ok(target.join(profile).join("dynatrace-token-rotator"))
}

/// Prints what the two rotations did and checks it; fails when the outcome is wrong.
/// `ids`: the original token and the one minted by rotation 1; `versions`: the version before
/// rotation 1 and those created by rotations 1 and 2.
async fn report(
    client: &aws_sdk_secretsmanager::Client,
    emulator: &Emulator,
    [gen0, gen1]: [&str; 2],
    [v0, v1, v2]: [&str; 3],
) -> Result<()> {
    let stages = secrets_manager::stages(client, APP_SECRET).await?;
    let document = document_at(client, AWSCURRENT).await?;
    let previous_document = document_at(client, AWSPREVIOUS).await?;
    let gen2 = document["tokenId"].as_str().unwrap_or("").to_string();
    let tokens: BTreeMap<String, TokenState> = emulator
        .tokens()
        .into_iter()
        .map(|t| (t.id.clone(), t))
        .collect();

    println!("\n  secret {APP_SECRET}: versions and labels");
    for (version, labels) in &stages {
        let role = match version.as_str() {
            v if v == v0 => "  (the original value)",
            v if v == v1 => "  (created by rotation 1)",
            v if v == v2 => "  (created by rotation 2)",
            _ => "",
        };
        let labels = if labels.is_empty() {
            "(no label)".to_string()
        } else {
            labels.join(", ")
        };
        println!("    {version}  {labels}{role}");
    }
    println!("\n  AWSCURRENT document (token value not shown)");
    if let Some(fields) = document.as_object() {
        for (key, value) in fields {
            if key == "token" {
                let len = value.as_str().map_or(0, str::len);
                println!("    {key:<16} <{len} characters, hidden>");
            } else {
                let shown = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string);
                println!("    {key:<16} {shown}");
            }
        }
    }
    println!("\n  tokens in the Dynatrace emulator");
    for token in tokens.values() {
        let role = match token.id.as_str() {
            id if id == gen0 => "original (2 rotations old)",
            id if id == gen1 => "rotation 1 (AWSPREVIOUS)",
            id if id == gen2 => "rotation 2 (AWSCURRENT)",
            _ if token.scopes.iter().any(|s| s == "apiTokens.write") => "manager",
            _ => "(a Vault secret's token, below)",
        };
        println!(
            "    {}  {:<8}  {role}\n      name   \"{}\"\n      scopes {}",
            token.id,
            if token.enabled { "enabled" } else { "DISABLED" },
            token.name,
            token.scopes.join(", ")
        );
    }

    // The outcome the tests prove, checked again here.
    let mut problems = Vec::new();
    let original = tokens.get(gen0);
    let previous = tokens.get(gen1);
    let current = tokens.get(&gen2);
    if gen2.is_empty() || gen2 == gen1 || gen2 == gen0 {
        problems.push("the AWSCURRENT document does not name a new tokenId".to_string());
    }
    if document["token"] == previous_document["token"] {
        problems.push("AWSCURRENT and AWSPREVIOUS hold the same token".to_string());
    }
    match current {
        Some(t) if t.enabled => {}
        Some(_) => problems.push("the current token is disabled".to_string()),
        None => problems.push(format!(
            "the current token {gen2} does not exist in Dynatrace"
        )),
    }
    if !previous.is_some_and(|t| t.enabled) {
        problems
            .push("the AWSPREVIOUS token should stay enabled until the next rotation".to_string());
    }
    if original.is_none_or(|t| t.enabled) {
        problems.push("the token two generations old should be disabled".to_string());
    }
    if let (Some(o), Some(n)) = (original, current) {
        let (mut a, mut b) = (o.scopes.clone(), n.scopes.clone());
        a.sort();
        b.sort();
        if a != b {
            problems
                .push("the current token's scopes differ from the original token's".to_string());
        }
    }
    if stages.get(v2).map(Vec::as_slice) != Some(&[AWSCURRENT.to_string()][..]) {
        problems.push(format!("version {v2} should carry exactly AWSCURRENT"));
    }
    if !stages
        .get(v1)
        .is_some_and(|l| l.iter().any(|s| s == AWSPREVIOUS))
    {
        problems.push(format!("version {v1} should carry AWSPREVIOUS"));
    }
    if stages.values().flatten().any(|s| s == AWSPENDING) {
        problems.push("AWSPENDING is still attached".to_string());
    }
    if document["team"].as_str() != Some("payments") {
        problems.push("the unknown field `team` was not preserved".to_string());
    }
    if document["previousTokenId"].as_str() != Some(gen1) {
        problems.push("previousTokenId does not name the previous token".to_string());
    }

    if problems.is_empty() {
        println!(
            "\n  OK: {APP_SECRET} holds {gen2}; {gen1} stays valid until the next rotation \
             (AWSPREVIOUS); {gen0}, two generations old, is disabled; `team` was preserved."
        );
        Ok(())
    } else {
        Err(Error::new(format!(
            "the rotation result is wrong:\n  - {}",
            problems.join("\n  - ")
        )))
    }
}

/// The response on one line, shortened.
fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 160 {
        format!("{}...", line.chars().take(160).collect::<String>())
    } else if line.is_empty() {
        "(empty response)".to_string()
    } else {
        line
    }
}

/// The Vault half of the demo: an EventBridge scheduled event through `cargo lambda invoke`
/// rotates every secret under `secret/dynatrace/` (the manager excluded); then shows the KV
/// versions and token states, and checks them.
async fn vault_rotation(
    bao: &Bao,
    lambda: &CargoLambda,
    emulator: &Emulator,
    apps: &[(&str, dynatrace_emulator::Seeded)],
) -> Result<()> {
    say(
        "Vault: EventBridge scheduled event (VAULT_ROTATE_PREFIX=dynatrace/) through cargo lambda invoke",
    );
    let envelope = serde_json::json!({
        "version": "0", "id": "demo", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-28T00:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/dynatrace-token-rotator"], "detail": {}
    });
    let response = lambda.invoke(&envelope.to_string()).await.map_err(|e| {
        Error::new(format!(
            "the scheduled Vault rotation failed: {e}\n---- function log (tail) ----\n{}",
            lambda.log_tail()
        ))
    })?;
    let summary: Value = serde_json::from_str(&response)?;
    println!(
        "    summary: rotated {}, skipped {}, failed {}",
        summary["rotated"], summary["skipped"], summary["failed"]
    );
    let mut problems = Vec::new();
    println!("\n  Vault secrets (KV v2 mount `secret`)");
    for (path, original) in apps {
        let (version, doc) = bao
            .kv_get("secret", path)
            .await?
            .ok_or_else(|| Error::new(format!("secret/{path} is missing")))?;
        let new_id = doc["tokenId"].as_str().unwrap_or("").to_string();
        let state = |id: &str| match emulator.token(id) {
            Some(t) if t.enabled => "enabled",
            Some(_) => "DISABLED",
            None => "deleted",
        };
        println!(
            "    secret/{path}  version {version}\n      tokenId         {new_id} ({})\n      previousTokenId {} ({})\n      rotatedAt       {}",
            state(&new_id),
            doc["previousTokenId"].as_str().unwrap_or("-"),
            state(&original.id),
            doc["rotatedAt"].as_str().unwrap_or("-")
        );
        if version != 2 || new_id.is_empty() || new_id == original.id {
            problems.push(format!("secret/{path} was not rotated to a new version"));
        }
        if state(&new_id) != "enabled" || state(&original.id) != "enabled" {
            problems.push(format!(
                "secret/{path}: both the new and the previous token must be enabled"
            ));
        }
        if doc["previousTokenId"].as_str() != Some(original.id.as_str()) {
            problems.push(format!(
                "secret/{path}: previousTokenId does not name the previous token"
            ));
        }
    }
    let manager_version = bao
        .kv_get("secret", VAULT_MANAGER_PATH)
        .await?
        .map(|(v, _)| v);
    println!(
        "    secret/{VAULT_MANAGER_PATH}  version {} (the manager is never rotated by rotate-vault)",
        manager_version.unwrap_or(0)
    );
    if manager_version != Some(1) {
        problems.push("the manager document was changed".into());
    }
    if summary["rotated"].as_u64() != Some(apps.len() as u64) {
        problems.push(format!(
            "expected {} rotated paths: {}",
            apps.len(),
            one_line(&response)
        ));
    }
    if problems.is_empty() {
        println!(
            "\n  OK: every Vault secret holds a new, proven token; the previous ones stay valid until the next run."
        );
        Ok(())
    } else {
        Err(Error::new(format!(
            "the Vault rotation result is wrong:\n  - {}",
            problems.join("\n  - ")
        )))
    }
}

/// Incident response: the current token of the first Vault app leaks. `revoke-leaked`, given
/// the value, disables it at once (renamed ` [leaked …]`, kept as evidence) and rotates the
/// path holding it now, although it is not due.
async fn leak_response(
    bao: &Bao,
    lambda: &CargoLambda,
    emulator: &Emulator,
    apps: &[(&str, dynatrace_emulator::Seeded)],
) -> Result<()> {
    let (path, _) = &apps[0];
    let (version, doc) = bao
        .kv_get("secret", path)
        .await?
        .ok_or_else(|| Error::new(format!("secret/{path} is missing")))?;
    let leaked_id = doc["tokenId"].as_str().unwrap_or("").to_owned();
    say(&format!(
        "leak response: the current token of secret/{path} ({leaked_id}) leaked; invoke revoke-leaked with its value"
    ));
    // The value goes only into the event; the answer and the log name the id.
    let event = serde_json::json!({"action": "revoke-leaked", "token": doc["token"]});
    let response = lambda.invoke(&event.to_string()).await.map_err(|e| {
        Error::new(format!(
            "revoke-leaked failed: {e}\n---- function log (tail) ----\n{}",
            lambda.log_tail()
        ))
    })?;
    println!("    answer {}", one_line(&response));
    let answer: Value = serde_json::from_str(&response)?;
    let (new_version, new_doc) = bao
        .kv_get("secret", path)
        .await?
        .ok_or_else(|| Error::new(format!("secret/{path} is missing")))?;
    let new_id = new_doc["tokenId"].as_str().unwrap_or("").to_owned();
    let leaked = emulator.token(&leaked_id);
    println!(
        "    leaked token {leaked_id}: {}\n    secret/{path}  version {new_version}, tokenId {new_id}, previousTokenId {}",
        leaked
            .as_ref()
            .map(|t| format!("enabled={}, name {:?}", t.enabled, t.name))
            .unwrap_or_else(|| "deleted".into()),
        new_doc["previousTokenId"].as_str().unwrap_or("-"),
    );
    let mut problems = Vec::new();
    if answer["tokenId"].as_str() != Some(leaked_id.as_str()) || answer["disabled"] != true {
        problems.push("the answer does not report the leaked token disabled".to_owned());
    }
    match &leaked {
        Some(t) if !t.enabled && t.name.contains(" [leaked ") => {}
        _ => problems.push("the leaked token is not disabled and renamed [leaked …]".into()),
    }
    if new_version != version + 1 || new_id.is_empty() || new_id == leaked_id {
        problems.push(format!(
            "secret/{path} was not rotated away from the leaked token"
        ));
    }
    if !emulator.token(&new_id).is_some_and(|t| t.enabled) {
        problems.push(format!("the new token of secret/{path} is not enabled"));
    }
    if problems.is_empty() {
        println!(
            "\n  OK: the leaked token is disabled and kept as evidence; secret/{path} already holds its successor."
        );
        Ok(())
    } else {
        Err(Error::new(format!(
            "the leak response is wrong:\n  - {}",
            problems.join("\n  - ")
        )))
    }
}

/// Peak resident memory (VmHWM, KiB) of the running rotator function process.
fn function_peak_rss_kib() -> Option<u64> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if first.ends_with(b"release/dynatrace-token-rotator") {
            let status = std::fs::read_to_string(entry.path().join("status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            return line.split_whitespace().nth(1)?.parse().ok();
        }
    }
    None
}

/// Starts the rotator under `cargo lambda watch` (release profile when `release`) with the
/// sandbox's environment: managers in moto, Vault at `bao` with its root token, plus `extra`.
fn start_function(
    moto: &Moto,
    bao: &Bao,
    extra: &[(&str, &str)],
    release: bool,
) -> tokio::task::JoinHandle<Result<CargoLambda>> {
    let mut envs: Vec<(String, String)> = vec![
        ("DT_MANAGER_SECRET_IDS".into(), MANAGER_SECRET.into()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), moto.endpoint()),
        ("AWS_REGION".into(), secrets_manager::REGION.into()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("VAULT_ADDR".into(), bao.addr()),
        ("VAULT_TOKEN".into(), bao.root_token().into()),
    ];
    envs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    tokio::task::spawn_blocking(move || {
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        CargoLambda::watch_profile(&envs, Duration::from_secs(600), release)
    })
}
