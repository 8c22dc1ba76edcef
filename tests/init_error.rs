//! A configuration refused at init reaches Lambda through the Runtime API's init-error
//! endpoint with its own `errorType` and message, before the process exits; Lambda, Secrets
//! Manager's `RotationFailed` event and `aws lambda invoke` then show the cause instead of
//! `Runtime.ExitError`. The real binary runs against a stub Runtime API.

use std::process::Command;
use std::time::Duration;

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
