//! dynatrace-token-rotator: an AWS Lambda that rotates Dynatrace API tokens held in
//! AWS Secrets Manager or HashiCorp Vault / OpenBao KV v2.
pub mod vault;
