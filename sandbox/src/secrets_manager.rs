//! Secrets Manager helpers: seed secrets, put them into the pending state of a rotation, and
//! inspect versions, labels and values. They work against moto or AWS alike.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::types::RotationRulesType;

use crate::{Error, Result};

/// Region the sandbox uses for Secrets Manager.
pub const REGION: &str = "us-east-1";

/// Account id moto uses by default.
pub const ACCOUNT_ID: &str = "123456789012";

/// ARN of the rotation function as the sandbox names it in `RotateSecret`
/// (moto has no such function; see [`begin_rotation`]).
pub const LAMBDA_ARN: &str =
    "arn:aws:lambda:us-east-1:123456789012:function:dynatrace-token-rotator";

/// Label of the current version.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// Label of the version being rotated in.
pub const AWSPENDING: &str = "AWSPENDING";
/// Label of the version that was current before the last rotation.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// The four steps of a rotation, in the order Secrets Manager invokes the rotation function
/// with them (the event's `Step`): one list for the demo and every test that walks a rotation.
pub const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];

/// A Secrets Manager client for `endpoint` (e.g. [`crate::Moto::endpoint`]): region
/// `us-east-1`, static credentials `test`/`test`, built without reading environment variables
/// or `~/.aws`.
pub fn client(endpoint: &str) -> Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "rotator-sandbox",
        ))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}

/// Creates secret `name` with string `value` (which becomes `AWSCURRENT`); returns its ARN.
pub async fn create_secret(client: &Client, name: &str, value: &str) -> Result<String> {
    let out = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await?;
    out.arn
        .ok_or_else(|| Error::new(format!("CreateSecret {name} returned no ARN")))
}

/// Puts `secret_id` into the state Secrets Manager creates before invoking `createSecret`:
/// rotation enabled (every 30 days, function `lambda_arn`) and a new version, whose id is
/// returned, carrying `AWSPENDING` and no value.
///
/// Uses `RotateSecret` with a fresh `ClientRequestToken`. Moto then tries to invoke its own
/// emulated Lambda function, which does not exist, and answers `ResourceNotFoundException`
/// after the state is set up; that error is ignored and the state checked with
/// `DescribeSecret`.
pub async fn begin_rotation(client: &Client, secret_id: &str, lambda_arn: &str) -> Result<String> {
    let version_id = crate::new_uuid();
    let rules = RotationRulesType::builder()
        .automatically_after_days(30)
        .build();
    let result = client
        .rotate_secret()
        .secret_id(secret_id)
        .client_request_token(&version_id)
        .rotation_lambda_arn(lambda_arn)
        .rotation_rules(rules)
        .send()
        .await;
    if let Err(e) = result {
        let not_found = e
            .as_service_error()
            .is_some_and(|se| se.is_resource_not_found_exception());
        if !not_found {
            return Err(e.into());
        }
    }
    let described = client.describe_secret().secret_id(secret_id).send().await?;
    if described.rotation_enabled != Some(true) {
        return Err(Error::new(format!(
            "RotateSecret on {secret_id} did not enable rotation"
        )));
    }
    let stages = described
        .version_ids_to_stages
        .unwrap_or_default()
        .remove(&version_id)
        .unwrap_or_default();
    if !stages.iter().any(|s| s == AWSPENDING) {
        return Err(Error::new(format!(
            "RotateSecret on {secret_id} did not create version {version_id} with AWSPENDING \
             (stages: {stages:?})"
        )));
    }
    Ok(version_id)
}

/// Map of version id to its labels (sorted), from `DescribeSecret`. Versions without a label
/// are not listed by Secrets Manager.
pub async fn stages(client: &Client, secret_id: &str) -> Result<BTreeMap<String, Vec<String>>> {
    let described = client.describe_secret().secret_id(secret_id).send().await?;
    Ok(described
        .version_ids_to_stages
        .unwrap_or_default()
        .into_iter()
        .map(|(version, mut labels)| {
            labels.sort();
            (version, labels)
        })
        .collect())
}

/// The version id holding `stage`, if any.
pub async fn version_with(client: &Client, secret_id: &str, stage: &str) -> Result<Option<String>> {
    Ok(stages(client, secret_id)
        .await?
        .into_iter()
        .find(|(_, labels)| labels.iter().any(|l| l == stage))
        .map(|(version, _)| version))
}

/// The string value of the version labelled `stage` (always read with `VersionStage`; moto may
/// answer an unqualified read from a stale version). `None` when no version carries the label or
/// it has no value yet.
pub async fn value_at(client: &Client, secret_id: &str, stage: &str) -> Result<Option<String>> {
    let result = client
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage(stage)
        .send()
        .await;
    match result {
        Ok(out) => Ok(out.secret_string),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The string value of version `version_id`; `None` when the version does not exist or has no
/// value (AWS answers `ResourceNotFoundException` for the empty pending version, moto answers
/// without `SecretString`: both give `None`).
pub async fn value_of_version(
    client: &Client,
    secret_id: &str,
    version_id: &str,
) -> Result<Option<String>> {
    let result = client
        .get_secret_value()
        .secret_id(secret_id)
        .version_id(version_id)
        .send()
        .await;
    match result {
        Ok(out) => Ok(out.secret_string),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether rotation is enabled on the secret (`DescribeSecret.RotationEnabled`).
pub async fn rotation_enabled(client: &Client, secret_id: &str) -> Result<bool> {
    let described = client.describe_secret().secret_id(secret_id).send().await?;
    Ok(described.rotation_enabled == Some(true))
}

/// Disables rotation (`CancelRotateSecret`); the versions and labels stay as they are.
pub async fn cancel_rotation(client: &Client, secret_id: &str) -> Result<()> {
    client
        .cancel_rotate_secret()
        .secret_id(secret_id)
        .send()
        .await?;
    Ok(())
}

/// Removes label `stage` from version `version_id` (`UpdateSecretVersionStage` with
/// `RemoveFromVersionId` only), e.g. to clear a stuck `AWSPENDING`.
pub async fn remove_stage(
    client: &Client,
    secret_id: &str,
    stage: &str,
    version_id: &str,
) -> Result<()> {
    client
        .update_secret_version_stage()
        .secret_id(secret_id)
        .version_stage(stage)
        .remove_from_version_id(version_id)
        .send()
        .await?;
    Ok(())
}

/// Stores `value` as a new version labelled `stages` (e.g. `[AWSPENDING]`) under
/// `ClientRequestToken` `version_id`, as the rotator's `createSecret` does.
pub async fn put_value(
    client: &Client,
    secret_id: &str,
    version_id: &str,
    value: &str,
    stages: &[&str],
) -> Result<()> {
    client
        .put_secret_value()
        .secret_id(secret_id)
        .client_request_token(version_id)
        .secret_string(value)
        .set_version_stages(Some(stages.iter().map(|s| s.to_string()).collect()))
        .send()
        .await?;
    Ok(())
}

/// Overwrites the current value from outside the rotation (a new `AWSCURRENT` version).
pub async fn update_value(client: &Client, secret_id: &str, value: &str) -> Result<String> {
    let out = client
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(value)
        .send()
        .await?;
    out.version_id.ok_or_else(|| {
        Error::new(format!(
            "PutSecretValue on {secret_id} returned no version id"
        ))
    })
}

fn is_not_found<E: ProvideErrorMetadata, R>(
    e: &aws_sdk_secretsmanager::error::SdkError<E, R>,
) -> bool {
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|code| code == "ResourceNotFoundException")
}
