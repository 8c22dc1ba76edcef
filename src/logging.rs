//! Log set-up: JSON lines through `tracing-subscriber`, level from `RUST_LOG` (or
//! `AWS_LAMBDA_LOG_LEVEL`), with the crates that log raw payloads at TRACE (the Lambda
//! runtime logs whole events, `RotationToken` included; the AWS SDK logs bodies) capped at
//! INFO whatever the setting, so no configuration can make a secret reach a log line.

use tracing_subscriber::EnvFilter;

/// Targets that must never log below INFO.
const CAPPED: &[&str] = &[
    "lambda_runtime",
    "lambda_runtime_api_client",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_sdk_secretsmanager",
    "aws_sdk_sqs",
    "aws_config",
    "hyper",
    "hyper_util",
    "reqwest",
    "rustls",
];

/// The filter: the configured level, with [`CAPPED`] targets held at INFO or above.
pub fn filter(level: Option<&str>) -> EnvFilter {
    let mut f =
        EnvFilter::try_new(level.unwrap_or("info")).unwrap_or_else(|_| EnvFilter::new("info"));
    for target in CAPPED {
        if let Ok(d) = format!("{target}=info").parse() {
            f = f.add_directive(d);
        }
    }
    f
}

/// The filter as a directive string (for test log captures that must filter like `main`).
pub fn directives(level: &str) -> String {
    let mut d = level.to_owned();
    for target in CAPPED {
        d.push_str(&format!(",{target}=info"));
    }
    d
}

/// Installs the JSON subscriber for the Lambda (once, in `main`).
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok());
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter(level.as_deref()))
        .with_current_span(false)
        .with_target(true)
        .without_time()
        .with_ansi(false)
        .init();
}
