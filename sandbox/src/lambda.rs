//! `cargo lambda watch` / `cargo lambda invoke` around the rotator binary.

use std::path::PathBuf;
use std::time::Duration;

use crate::process::{Supervised, http_status};
use crate::{Error, Result, free_port, tool, tools_dir, workspace_root};

/// Name of the rotator's binary, which is also its function name under `cargo lambda watch`.
pub const FUNCTION: &str = "dynatrace-token-rotator";

/// A `cargo lambda watch` process serving the rotator on a free loopback invoke port, run from
/// the workspace root; stopped (with the function process) on drop.
pub struct CargoLambda {
    port: u16,
    env_file: PathBuf,
    process: Supervised,
}

impl CargoLambda {
    /// Starts `cargo lambda watch` for binary [`FUNCTION`] with the function's environment
    /// `envs` (passed through an env file, so values may contain commas) and waits (blocking, up
    /// to `timeout`) until its invoke port answers. The function is compiled on the first invoke;
    /// build it beforehand (`cargo build --bin dynatrace-token-rotator`) to keep that short.
    pub fn watch(envs: &[(&str, &str)], timeout: Duration) -> Result<Self> {
        Self::watch_profile(envs, timeout, false)
    }

    /// Like [`CargoLambda::watch`], with the release profile when `release` (for benchmarks).
    pub fn watch_profile(envs: &[(&str, &str)], timeout: Duration, release: bool) -> Result<Self> {
        let program = tool("cargo-lambda")?;
        let port = free_port()?;
        let env_file = std::env::temp_dir().join(format!(
            "rotator-sandbox-lambda-env-{}-{}",
            std::process::id(),
            crate::unique_suffix()
        ));
        let mut text = String::new();
        for (k, v) in envs {
            if v.contains('\n') {
                return Err(Error::new(format!(
                    "environment value of {k} contains a newline"
                )));
            }
            text.push_str(&format!("{k}={v}\n"));
        }
        std::fs::write(&env_file, text)?;
        let mut args: Vec<String> = [
            "lambda",
            "watch",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
            "--env-file",
            &env_file.display().to_string(),
            "--package",
            FUNCTION,
            "--bin",
            FUNCTION,
            "--ignore-changes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if release {
            args.push("--release".to_string());
        }
        let process = Supervised::spawn(
            "cargo-lambda-watch",
            &program,
            &args,
            &[("PATH".to_string(), path_with_tools()?)],
            Some(&workspace_root()),
        )?;
        let watch = Self {
            port,
            env_file,
            process,
        };
        watch
            .process
            .wait_until(timeout, || http_status(port, "/", &[]).is_some())?;
        Ok(watch)
    }

    /// The invoke port (`cargo lambda invoke --invoke-port`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Path of the file collecting the output of `cargo lambda watch` and the function's logs.
    pub fn log_path(&self) -> &std::path::Path {
        self.process.log_path()
    }

    /// The last lines of that log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Runs `cargo lambda invoke dynatrace-token-rotator --data-ascii <payload>` against this
    /// watch process; returns the function's response (JSON text). A function error, or a
    /// failure of the invoke command, is an error carrying its output.
    pub async fn invoke(&self, payload: &str) -> Result<String> {
        let program = tool("cargo-lambda")?;
        let output = tokio::process::Command::new(program)
            .args([
                "lambda",
                "invoke",
                FUNCTION,
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
            ])
            .arg(self.port.to_string())
            .args(["--output-format", "json", "--data-ascii", payload])
            .env("PATH", path_with_tools()?)
            .env("CARGO_LAMBDA_COLOR", "never")
            .current_dir(workspace_root())
            .stdin(std::process::Stdio::null())
            .output()
            .await?;
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(Error::new(format!(
                "cargo lambda invoke failed ({}):\n{stdout}\n{stderr}",
                output.status
            )))
        }
    }
}

impl Drop for CargoLambda {
    fn drop(&mut self) {
        self.process.stop();
        let _ = std::fs::remove_file(&self.env_file);
    }
}

/// `PATH` with the tools directory first, so `cargo lambda` finds its helpers.
fn path_with_tools() -> Result<String> {
    let tools = tools_dir()?;
    let mut paths = vec![tools];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    let joined =
        std::env::join_paths(paths).map_err(|e| Error::new(format!("cannot build PATH: {e}")))?;
    Ok(joined.to_string_lossy().into_owned())
}
