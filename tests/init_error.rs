//! A configuration refused at init reaches Lambda through the Runtime API's init-error
//! endpoint with its own `errorType` and message, before the process exits; Lambda, Secrets
//! Manager's `RotationFailed` event and `aws lambda invoke` then show the cause instead of
//! `Runtime.ExitError`. The real binary runs against a stub Runtime API.

use std::process::Command;
use std::time::Duration;

mod support;

use rotator_sandbox::{Reply, StubServer};

/// Starts the function binary with `vars` only (plus the stub Runtime API) and waits for it
/// to exit; returns its exit status and what the Runtime API received.
fn start_with(
    vars: &[(&str, &str)],
) -> (
    std::process::ExitStatus,
    Vec<rotator_sandbox::stub::Recorded>,
) {
    let api = StubServer::replies(vec![Reply::json(202, r#"{"status":"OK"}"#)]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dynatrace-token-rotator"));
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.addr().to_string())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the function");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("the function did not exit after a refused configuration");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, api.requests())
}

#[test]
fn a_refused_configuration_is_reported_to_the_init_error_endpoint() {
    let (status, requests) = start_with(&[
        ("DT_MANAGER_SECRET_IDS", "dynatrace/manager"),
        ("DT_TOKEN_LIFETIME_DAYS", "3"),
        ("VAULT_TOKEN", "hvs.do-not-echo-this-token-value"),
    ]);
    assert!(!status.success(), "the process exits with an error");
    let report = requests
        .iter()
        .find(|r| r.path == "/2018-06-01/runtime/init/error")
        .unwrap_or_else(|| panic!("no init error report: {requests:?}"));
    assert_eq!(report.method, "POST");
    assert_eq!(
        report.header("Lambda-Runtime-Function-Error-Type"),
        Some("ConfigError")
    );
    let body = report.json().expect("a JSON body");
    assert_eq!(body["errorType"], "ConfigError");
    let message = body["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("DT_TOKEN_LIFETIME_DAYS") && message.contains("ROTATION_INTERVAL_DAYS"),
        "{message}"
    );
    // It never asked for an invocation: the init failed.
    assert!(
        requests
            .iter()
            .all(|r| !r.path.ends_with("/invocation/next"))
    );
    assert!(!String::from_utf8_lossy(&report.body).contains("do-not-echo"));
}

#[test]
fn a_refused_vault_configuration_names_its_variable() {
    let (status, requests) = start_with(&[
        ("VAULT_ADDR", "http://vault.example.com:8200"),
        ("VAULT_TOKEN", "hvs.do-not-echo-this-token-value"),
        ("VAULT_MANAGER_PATH", "dynatrace/master"),
    ]);
    assert!(!status.success());
    let report = requests
        .iter()
        .find(|r| r.path == "/2018-06-01/runtime/init/error")
        .unwrap_or_else(|| panic!("no init error report: {requests:?}"));
    let body = report.json().unwrap();
    assert_eq!(body["errorType"], "ConfigError");
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("VAULT_ADDR"),
        "{body}"
    );
    assert!(!String::from_utf8_lossy(&report.body).contains("do-not-echo"));
}

/// Runs the function binary with `vars` against a stub Runtime API that hands it `event` once;
/// returns the function's response (or error report) body. The process is killed after.
fn invoke_binary(vars: &[(&str, String)], event: serde_json::Value) -> serde_json::Value {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let served = AtomicUsize::new(0);
    let event = event.to_string();
    let api = StubServer::start(move |req, _| {
        if req.path.ends_with("/invocation/next") {
            if served.fetch_add(1, Ordering::SeqCst) == 0 {
                let deadline = (std::time::SystemTime::now() + Duration::from_secs(60))
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis();
                return Reply::json(200, &event)
                    .header("Lambda-Runtime-Aws-Request-Id", "req-1")
                    .header("Lambda-Runtime-Deadline-Ms", deadline.to_string())
                    .header(
                        "Lambda-Runtime-Invoked-Function-Arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:dynatrace-token-rotator",
                    );
            }
            // No second event: keep the runtime waiting until it is killed.
            std::thread::sleep(Duration::from_secs(30));
            return Reply::new(500);
        }
        Reply::json(202, r#"{"status":"OK"}"#)
    });
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dynatrace-token-rotator"));
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.addr().to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "dynatrace-token-rotator")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("start the function");
    let started = std::time::Instant::now();
    let answer = loop {
        let done = api.requests().into_iter().find(|r| {
            r.path.starts_with("/2018-06-01/runtime/invocation/req-1/")
                || r.path.ends_with("/init/error")
        });
        if let Some(r) = done {
            break r;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the function exited ({status}) without answering: {:?}",
                api.requests()
            );
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no answer");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        answer.path.ends_with("/response") || answer.path.ends_with("/error"),
        "init failed: {:?} {}",
        answer.path,
        String::from_utf8_lossy(&answer.body)
    );
    let mut body = answer.json().expect("a JSON answer");
    body["answeredAt"] = serde_json::json!(answer.path);
    body["logs"] = serde_json::json!(logs);
    body
}

/// `VAULT_CREDENTIALS_SECRET_ID`: the Vault token comes from a Secrets Manager secret, not from
/// the function's environment, and it is the one used (a refused token in the secret makes the
/// run fail with `VaultTokenExpired`). The secret's value never appears in the answer.
#[tokio::test(flavor = "multi_thread")]
async fn vault_credentials_come_from_a_secrets_manager_secret() {
    let w = support_world().await;
    let (path, seeded) = w.app("from-secret", serde_json::json!({})).await;
    let moto = rotator_sandbox::Moto::shared();
    let secret = format!(
        "rotator/vault-credentials-{}",
        rotator_sandbox::unique_suffix()
    );
    rotator_sandbox::secrets_manager::create_secret(
        &moto.client(),
        &secret,
        &serde_json::json!({"VAULT_TOKEN": w.bao.root_token()}).to_string(),
    )
    .await
    .unwrap();
    let vars = |secret: &str| {
        vec![
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.endpoint()),
            ("VAULT_ADDR", w.bao.addr()),
            ("VAULT_MANAGER_PATH", w.path("master")),
            ("VAULT_CREDENTIALS_SECRET_ID", secret.to_owned()),
        ]
    };
    let event = serde_json::json!({"action": "rotate-vault", "paths": [path], "dryRun": true});
    let answer = tokio::task::spawn_blocking({
        let (vars, event) = (vars(&secret), event.clone());
        move || invoke_binary(&vars, event)
    })
    .await
    .unwrap();
    assert!(
        answer["answeredAt"]
            .as_str()
            .unwrap()
            .ends_with("/response"),
        "{answer}"
    );
    assert_eq!(answer["results"][0]["status"], "would-rotate", "{answer}");
    assert_eq!(answer["results"][0]["tokenId"], seeded.id.as_str());
    assert!(
        answer["logs"].as_str().unwrap().contains("path done"),
        "the function's logs are captured"
    );
    assert!(
        !answer.to_string().contains(w.bao.root_token()),
        "the token leaked"
    );
    // One embedded-metric line for the invocation, on stdout beside the log lines.
    let logs = answer["logs"].as_str().unwrap();
    assert!(
        logs.lines()
            .any(|l| l.contains("\"_aws\"") && l.contains("\"Action\":\"rotate-vault\"")),
        "no EMF line: {logs}"
    );

    // A secret holding a token Vault refuses: that token is the one used.
    let refused = format!(
        "rotator/vault-credentials-{}",
        rotator_sandbox::unique_suffix()
    );
    rotator_sandbox::secrets_manager::create_secret(
        &moto.client(),
        &refused,
        r#"{"VAULT_TOKEN":"hvs.this-token-was-never-issued-000000"}"#,
    )
    .await
    .unwrap();
    let answer = tokio::task::spawn_blocking({
        let vars = vars(&refused);
        move || invoke_binary(&vars, event)
    })
    .await
    .unwrap();
    assert_eq!(answer["errorType"], "VaultTokenExpired", "{answer}");
    assert!(!answer.to_string().contains("never-issued"));
}

/// The binary's SQS client is built once in `main` from the SDK's own settings, so
/// `AWS_ENDPOINT_URL_SQS` points it at moto: `enqueue-vault` fills `VAULT_QUEUE_URL` and the
/// invocation prints its embedded-metric line.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_enqueues_through_the_sdk_endpoint_setting() {
    let w = support_world().await;
    let (path, _) = w.app("queued", serde_json::json!({})).await;
    let moto = rotator_sandbox::Moto::shared();
    let queue = rotator_sandbox::sqs::create_queue(
        &moto.sqs_client(),
        &format!("rotations-{}", rotator_sandbox::unique_suffix()),
    )
    .await
    .unwrap();
    let vars = vec![
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.endpoint()),
        ("AWS_ENDPOINT_URL_SQS", moto.endpoint()),
        ("VAULT_ADDR", w.bao.addr()),
        ("VAULT_TOKEN", w.bao.root_token().to_owned()),
        ("VAULT_MANAGER_PATH", w.path("master")),
        ("VAULT_QUEUE_URL", queue.clone()),
    ];
    let event = serde_json::json!({"action": "enqueue-vault", "paths": [path]});
    let answer = tokio::task::spawn_blocking(move || invoke_binary(&vars, event))
        .await
        .unwrap();
    assert_eq!(
        (answer["paths"].as_u64(), answer["messages"].as_u64()),
        (Some(1), Some(1)),
        "{answer}"
    );
    let received = rotator_sandbox::sqs::drain(&moto.sqs_client(), &queue)
        .await
        .unwrap();
    assert_eq!(received.len(), 1);
    assert!(received[0].body.contains(&path), "{}", received[0].body);
    let logs = answer["logs"].as_str().unwrap();
    assert!(
        logs.lines()
            .any(|l| l.contains("\"_aws\"") && l.contains("\"Action\":\"enqueue-vault\"")),
        "no EMF line: {logs}"
    );
    assert!(!answer.to_string().contains(w.bao.root_token()));
}

async fn support_world() -> support::VaultWorld {
    support::VaultWorld::new(&[]).await
}

/// A Vault credential set both in the environment and in the secret is refused at init, so it
/// is never unclear which one is used; the message names the variable, not its value.
#[tokio::test(flavor = "multi_thread")]
async fn a_credential_in_both_places_is_refused() {
    let moto = rotator_sandbox::Moto::shared();
    let secret = format!(
        "rotator/vault-credentials-{}",
        rotator_sandbox::unique_suffix()
    );
    rotator_sandbox::secrets_manager::create_secret(
        &moto.client(),
        &secret,
        r#"{"VAULT_TOKEN":"hvs.from-the-secret-000000000000"}"#,
    )
    .await
    .unwrap();
    let endpoint = moto.endpoint();
    let (status, requests) = tokio::task::spawn_blocking(move || {
        start_with(&[
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", &endpoint),
            ("VAULT_CREDENTIALS_SECRET_ID", &secret),
            ("VAULT_TOKEN", "hvs.from-the-environment-0000000"),
            ("VAULT_ADDR", "http://127.0.0.1:1"),
            ("VAULT_MANAGER_PATH", "dynatrace/master"),
        ])
    })
    .await
    .unwrap();
    assert!(!status.success());
    let report = requests
        .iter()
        .find(|r| r.path == "/2018-06-01/runtime/init/error")
        .unwrap_or_else(|| panic!("no init error report: {requests:?}"));
    let body = report.json().unwrap();
    assert_eq!(body["errorType"], "ConfigError");
    let message = body["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("VAULT_TOKEN") && message.contains("both"),
        "{message}"
    );
    let text = String::from_utf8_lossy(&report.body);
    assert!(!text.contains("from-the-secret") && !text.contains("from-the-environment"));
}
