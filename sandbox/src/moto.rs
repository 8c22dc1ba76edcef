//! `moto_server` as AWS Secrets Manager and SQS.

use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;

use crate::process::{Supervised, http_status};
use crate::{Error, Result, free_port, tool};

/// A `moto_server` child process on a free loopback port, stopped on drop.
///
/// Moto keeps all state in memory for its lifetime; tests sharing one instance
/// ([`Moto::shared`]) must use unique secret names (see [`crate::unique_suffix`]).
pub struct Moto {
    port: u16,
    process: Supervised,
}

impl Moto {
    /// Starts a new `moto_server -H 127.0.0.1 -p PORT` and waits (blocking, up to 60 s) until it
    /// answers. Independent of any async runtime.
    pub fn start() -> Result<Self> {
        let program = tool("moto_server")?;
        let mut last_error = None;
        // A port found free can be taken by someone else before moto binds it: retry.
        for _ in 0..3 {
            let port = free_port()?;
            let args = [
                "-H".to_string(),
                "127.0.0.1".to_string(),
                "-p".to_string(),
                port.to_string(),
            ];
            let process = Supervised::spawn("moto_server", &program, &args, &[], None)?;
            match process.wait_until(Duration::from_secs(60), || {
                http_status(port, "/moto-api/", &[]) == Some(200)
            }) {
                Ok(()) => return Ok(Self { port, process }),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::new("moto_server did not start")))
    }

    /// The instance shared by the whole test process, started on first use. Safe to call from
    /// any thread or tokio runtime; it is stopped when the process exits.
    ///
    /// # Panics
    /// When `moto_server` cannot be started (the message says why, e.g. run `scripts/tools.sh`).
    pub fn shared() -> &'static Moto {
        static SHARED: OnceLock<Moto> = OnceLock::new();
        SHARED.get_or_init(|| match Moto::start() {
            Ok(moto) => moto,
            Err(e) => panic!("cannot start the shared moto_server: {e}"),
        })
    }

    /// The endpoint URL, `http://127.0.0.1:PORT` (the value for `AWS_ENDPOINT_URL_SECRETS_MANAGER`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The TCP port moto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new Secrets Manager client for this moto (see [`crate::secrets_manager::client`]). Create one per
    /// tokio runtime: a client's connection pool belongs to the runtime that used it.
    pub fn client(&self) -> Client {
        crate::secrets_manager::client(&self.endpoint())
    }

    /// A new SQS client for this moto (see [`crate::sqs::client`]); one per tokio runtime, like
    /// [`Moto::client`].
    pub fn sqs_client(&self) -> aws_sdk_sqs::Client {
        crate::sqs::client(&self.endpoint())
    }

    /// Path of the file collecting moto's output.
    pub fn log_path(&self) -> &std::path::Path {
        self.process.log_path()
    }
}
