//! Child processes supervised by a shell watchdog that dies with this process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Watchdog: runs the server in the background with its output in `$SANDBOX_LOG`, prints its
/// pid, and kills it once its own stdin (a pipe from the parent) reaches end-of-file, which
/// happens when the parent closes it or exits in any way. The shell exits when the server does.
const WATCHDOG: &str = r#"
exec 3<&0 0</dev/null
"$@" >>"$SANDBOX_LOG" 2>&1 3<&- &
p=$!
echo "$p"
( cat <&3 >/dev/null 2>&1; kill "$p" 2>/dev/null ) &
w=$!
exec 3<&-
wait "$p"
s=$?
kill "$w" 2>/dev/null
exit "$s"
"#;

/// A server process started through the watchdog. Dropping it stops the server.
pub(crate) struct Supervised {
    name: String,
    pid: u32,
    log: PathBuf,
    child: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
}

impl Supervised {
    /// Starts `program args..` with `envs` (and `cwd` when given) under the watchdog.
    pub(crate) fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        envs: &[(String, String)],
        cwd: Option<&Path>,
    ) -> Result<Self> {
        let log = std::env::temp_dir().join(format!(
            "rotator-sandbox-{name}-{}-{}.log",
            std::process::id(),
            crate::unique_suffix()
        ));
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("rotator-sandbox-watchdog")
            .arg(program)
            .args(args)
            .env("SANDBOX_LOG", &log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::new(format!("cannot start {name} (through sh): {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let pid: u32 = line.trim().parse().map_err(|_| {
            let _ = child.kill();
            Error::new(format!("cannot start {name}: the watchdog printed no pid"))
        })?;
        Ok(Self {
            name: name.to_string(),
            pid,
            log,
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
        })
    }

    /// Path of the file collecting the server's stdout and stderr.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of the server's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(30);
        lines[start..].join("\n")
    }

    /// Whether the server is still running (the watchdog exits when it does).
    pub(crate) fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        matches!(child.try_wait(), Ok(None))
    }

    /// Polls `ready` every 100 ms until it returns true, failing when the server exits or
    /// `timeout` passes; errors carry the tail of the server's log.
    pub(crate) fn wait_until(
        &self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return Err(Error::new(format!(
                    "{} exited during start-up; its log ({}):\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                )));
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::new(format!(
                    "{} did not become ready within {timeout:?}; its log ({}):\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server: closes the watchdog's stdin, waits for it, and kills both after 10 s.
    pub(crate) fn stop(&self) {
        drop(self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take());
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .arg("-9")
            .arg(self.pid.to_string())
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Status code of `GET path` on `127.0.0.1:port` with extra `headers`, over plain HTTP/1.0
/// (blocking, independent of any async runtime); `None` when nothing answers.
pub(crate) fn http_status(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(3)))
        .ok()?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line).ok()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}
