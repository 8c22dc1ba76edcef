//! SQS helpers: create a queue and drain it. They work against moto or AWS alike.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};

use crate::{Error, Result};

/// An SQS client for `endpoint` (e.g. [`crate::Moto::endpoint`]): region `us-east-1`, static
/// credentials `test`/`test`, built without reading environment variables or `~/.aws`.
pub fn client(endpoint: &str) -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(crate::secrets_manager::REGION))
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

/// Creates a standard queue named `name` (see [`crate::unique_suffix`]); returns its URL.
pub async fn create_queue(client: &Client, name: &str) -> Result<String> {
    let out = client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| {
            Error::new(format!(
                "SQS CreateQueue {name} failed: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            ))
        })?;
    out.queue_url
        .ok_or_else(|| Error::new(format!("CreateQueue {name} returned no URL")))
}

/// A message taken off a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// `MessageId`.
    pub message_id: String,
    /// The body.
    pub body: String,
}

/// Receives (and deletes) every message of the queue at `url` until a receive comes back
/// empty; returns them in the order received.
pub async fn drain(client: &Client, url: &str) -> Result<Vec<Received>> {
    let mut out = Vec::new();
    loop {
        let page = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .map_err(|e| {
                Error::new(format!(
                    "SQS ReceiveMessage failed: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                ))
            })?;
        let messages = page.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(out);
        }
        for m in messages {
            if let Some(handle) = m.receipt_handle() {
                client
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|e| {
                        Error::new(format!(
                            "SQS DeleteMessage failed: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(&e)
                        ))
                    })?;
            }
            out.push(Received {
                message_id: m.message_id.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            });
        }
    }
}
