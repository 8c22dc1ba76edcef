//! Local sandbox and test harness of the Dynatrace token rotator.
//!
//! The main crate's integration tests and the `sandbox demo` binary share this code, so the demo
//! cannot drift from what the tests prove. It starts the external services as child processes on
//! free loopback ports, seeds them, and inspects them:
//!
//! - [`Moto`]: `moto_server` as AWS Secrets Manager, with the helpers of [`sm`] (create a secret,
//!   put it into the pending state of a rotation, read versions and labels), and as SQS, with
//!   the helpers of [`sqs`] (create a queue, drain it);
//! - [`Bao`]: `bao server -dev` (OpenBao) as Vault, with KV v1/v2, AppRole and policy helpers;
//! - [`FaultProxy`]: a recording reverse proxy that injects faults in front of moto or OpenBao;
//! - [`StubServer`] (module [`stub`]): a scripted loopback HTTP server for answers no real
//!   server gives (redirects, canned 5xx sequences, malformed or huge bodies, an IAM login);
//! - [`LogCapture`]: captures `tracing` output as JSON lines, to assert no secret is logged;
//! - [`CargoLambda`]: `cargo lambda watch` / `invoke` around the rotator binary.
//!
//! The tools come from `<workspace>/.tools/venv/bin`, installed by `scripts/tools.sh`.
//! Child processes are supervised by a small shell watchdog whose stdin is a pipe from this
//! process: when this process exits for any reason (even without running destructors, as with a
//! `static` shared instance), the pipe closes and the watchdog stops the server.

#![warn(missing_docs)]

mod bao;
mod lambda;
mod logs;
mod moto;
mod process;
mod proxy;
pub mod secrets_manager;
pub mod sqs;
pub mod stub;

use std::fmt;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

pub use bao::{Bao, KvMetadata, KvVersionMeta};
pub use lambda::CargoLambda;
pub use logs::LogCapture;
pub use moto::Moto;
pub use proxy::{FaultProxy, ProxyCall, ProxyFault, ProxyRule};
pub use stub::{Recorded, Reply, StubServer};

/// Error of the sandbox helpers: a message naming what failed and, where useful, what to do.
#[derive(Debug)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error carrying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl<E, R> From<aws_sdk_secretsmanager::error::SdkError<E, R>> for Error
where
    E: std::error::Error + 'static,
    R: fmt::Debug,
{
    fn from(e: aws_sdk_secretsmanager::error::SdkError<E, R>) -> Self {
        Self::new(format!(
            "Secrets Manager call failed: {}",
            aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
        ))
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Self::new(format!("HTTP request failed: {e}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::new(format!("I/O error: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::new(format!("JSON error: {e}"))
    }
}

/// Result of the sandbox helpers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Environment variable overriding the directory holding the tools (default
/// `<workspace>/.tools/venv/bin`).
pub const TOOLS_BIN_ENV: &str = "ROTATOR_TOOLS_BIN";

/// Root of the cargo workspace (the directory holding the main crate's `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Directory of the project-local tools (`moto_server`, `bao`, `cargo-lambda`, `cfn-lint`):
/// `$ROTATOR_TOOLS_BIN` when set, else `<workspace>/.tools/venv/bin`.
///
/// Fails with a message telling to run `scripts/tools.sh` when the directory is missing.
pub fn tools_dir() -> Result<PathBuf> {
    let (dir, origin) = match std::env::var_os(TOOLS_BIN_ENV) {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), format!("${TOOLS_BIN_ENV}")),
        _ => (
            workspace_root().join(".tools").join("venv").join("bin"),
            "the default location".to_string(),
        ),
    };
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(Error::new(format!(
            "local tools not found at {} ({origin}); run scripts/tools.sh from the repository root \
             to install moto_server, bao, cargo-lambda and cfn-lint",
            dir.display()
        )))
    }
}

/// Path of one tool in [`tools_dir`], e.g. `tool("moto_server")`; fails (telling to run
/// `scripts/tools.sh`) when it is not installed.
pub fn tool(name: &str) -> Result<PathBuf> {
    let path = tools_dir()?.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::new(format!(
            "tool {name} not found at {}; run scripts/tools.sh from the repository root",
            path.display()
        )))
    }
}

/// A loopback TCP port that was free a moment ago (bind `127.0.0.1:0`, read the port, release).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// A fresh random UUID (v4), e.g. for a Secrets Manager `ClientRequestToken` or a unique name.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A short random suffix for names that must not collide between tests sharing one server.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// A secret document as the rotator stores it: `{"environmentUrl": .., "token": .., <extra>..}`
/// as JSON text (extra fields are string-valued, e.g. `[("team", "payments")]`).
pub fn token_document(environment_url: &str, token: &str, extra: &[(&str, &str)]) -> String {
    let mut doc = serde_json::Map::new();
    doc.insert("environmentUrl".into(), environment_url.into());
    doc.insert("token".into(), token.into());
    for (k, v) in extra {
        doc.insert((*k).into(), (*v).into());
    }
    serde_json::Value::Object(doc).to_string()
}
