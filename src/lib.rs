//! dynatrace-token-rotator: an AWS Lambda that rotates Dynatrace API tokens held in AWS
//! Secrets Manager (the four-step rotation protocol) or HashiCorp Vault / OpenBao KV v2
//! (scheduled rotation), safe under retries, faults and concurrency.
//!
//! The rotation of one token lives in [`rotation`]; [`secrets_manager`] is the adapter for
//! Secrets Manager's protocol. See docs/design.md for the product and README.md for the layout.

pub mod app;
pub mod audit;
pub mod body;
pub mod config;
pub mod deadline;
pub mod document;
pub mod dynatrace;
pub mod enqueue;
pub mod environment;
pub mod event;
pub mod leak;
pub mod logging;
pub mod marker;
pub mod metrics;
pub mod policy;
pub mod rotation;
pub mod secret;
pub mod secrets_manager;
pub mod sweep;
pub mod throttle;
pub mod vault;
