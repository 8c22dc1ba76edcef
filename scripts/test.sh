#!/usr/bin/env bash
# The full check suite, runnable on a fresh machine (Python 3 with pip, Rust toolchain):
# installs the pinned local tools, lints the SAM template, checks formatting and lints, and runs
# every test of the workspace (which start moto_server, OpenBao and the Dynatrace emulator).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "tools (scripts/tools.sh)"
scripts/tools.sh
export PATH="$root/.tools/venv/bin:$PATH"

step "cfn-lint template.yaml"
cfn-lint template.yaml

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace

step "cargo deny (bans, licenses, sources; advisories with DENY_ADVISORIES=1, see deny.toml)"
.tools/cargo/bin/cargo-deny check bans licenses sources
if [ "${DENY_ADVISORIES:-0}" = 1 ]; then
    .tools/cargo/bin/cargo-deny check advisories
fi

printf '\nall checks passed\n'
