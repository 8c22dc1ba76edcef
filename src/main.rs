//! Lambda entry point: builds the shared dependencies once per execution environment and
//! hands every invocation to [`app::handle`].

use dynatrace_token_rotator::app::{self, Deps, HandlerError};
use dynatrace_token_rotator::deadline::Deadline;
use dynatrace_token_rotator::dynatrace::{Dynatrace, RetrySettings};
use dynatrace_token_rotator::logging;
use dynatrace_token_rotator::vault::rotate::VaultBackend;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

/// The Secrets Manager client, with a per-attempt timeout: a hanging call becomes an unclear
/// answer the rotation settles by repeating the same idempotent call, inside the deadline.
fn secrets_manager_client(aws: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
    let timeouts = aws_sdk_secretsmanager::config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(std::time::Duration::from_secs(5))
        .build();
    let config = aws_sdk_secretsmanager::config::Builder::from(aws)
        .timeout_config(timeouts)
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

/// The SQS client (`enqueue-vault`), with the same per-attempt timeout; its endpoint follows
/// the SDK's own settings (`AWS_ENDPOINT_URL_SQS` for local testing).
fn sqs_client(aws: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    let timeouts = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(std::time::Duration::from_secs(5))
        .build();
    let config = aws_sdk_sqs::config::Builder::from(aws)
        .timeout_config(timeouts)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// Builds what every invocation shares: configuration, clients, the Vault backend.
async fn init() -> Result<Deps, HandlerError> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let secrets_manager = secrets_manager_client(&aws);
    let config = app::read_config(&secrets_manager).await?;
    let vault = match &config.vault {
        Some(v) => Some(VaultBackend::new(v, aws.credentials_provider())?),
        None => None,
    };
    let dynatrace = Dynatrace::new(RetrySettings::default())
        .map_err(|e| HandlerError {
            error_type: "ConfigError",
            message: format!("cannot build the Dynatrace HTTP client: {e}"),
        })?
        .with_max_in_flight(config.rotation_concurrency);
    Ok(Deps {
        vault,
        config,
        secrets_manager,
        sqs: sqs_client(&aws),
        dynatrace,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    logging::init();
    let deps = match init().await {
        Ok(deps) => deps,
        Err(e) => {
            app::report_init_error(&e).await;
            return Err(e.into());
        }
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = Deadline::from_epoch_millis(event.context.deadline);
        tracing::debug!(request_id = %event.context.request_id, remaining = ?deadline.remaining(), "invocation");
        app::handle(deps, event.payload, deadline)
            .await
            .map_err(|e: HandlerError| e)
    }))
    .await
}
