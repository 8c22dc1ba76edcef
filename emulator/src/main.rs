//! `dynatrace-emulator [--listen 127.0.0.1:PORT] [--ignore-stdin]`
//!
//! Starts the emulator, prints `listening http://127.0.0.1:PORT` on stdout and serves until
//! SIGTERM/SIGINT or, unless `--ignore-stdin` is given, until stdin reaches EOF.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use dynatrace_emulator::Emulator;

fn usage() -> ExitCode {
    eprintln!("usage: dynatrace-emulator [--listen 127.0.0.1:PORT] [--ignore-stdin]");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("static address");
    let mut watch_stdin = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = if arg == "--listen" {
            args.next()
        } else if let Some(v) = arg.strip_prefix("--listen=") {
            Some(v.to_string())
        } else if arg == "--ignore-stdin" {
            watch_stdin = false;
            continue;
        } else {
            return usage();
        };
        match value.and_then(|v| v.parse().ok()) {
            Some(addr) => listen = addr,
            None => return usage(),
        }
    }
    let emulator = match Emulator::start_on(listen).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("dynatrace-emulator: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening {}", emulator.url());
        let _ = out.flush();
    }
    wait_for_stop(watch_stdin).await;
    emulator.shutdown();
    ExitCode::SUCCESS
}

async fn wait_for_stop(watch_stdin: bool) {
    // Read stdin on a plain thread: a blocked tokio stdin read would hold up runtime shutdown.
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    if watch_stdin {
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            let mut stdin = std::io::stdin().lock();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            let _ = eof_tx.send(());
        });
    }
    let stdin_eof = async {
        if eof_rx.await.is_err() {
            // `--ignore-stdin`: the sender was dropped unused; never finish.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = stdin_eof => {}
    }
}
