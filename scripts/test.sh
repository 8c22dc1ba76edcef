#!/usr/bin/env bash
# The full check suite, runnable on a fresh machine (Python 3 with pip, Rust toolchain):
# installs the pinned local tools, lints the SAM template (cfn-lint, sam validate --lint), builds it
# (sam build), checks formatting and lints, and runs every test of the workspace (which start
# moto_server, OpenBao and the Dynatrace emulator).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "tools (scripts/tools.sh)"
scripts/tools.sh
export PATH="$root/.tools/venv/bin:$PATH"

step "cfn-lint template.yaml"
cfn-lint template.yaml

# SAM CLI without telemetry. Neither sam step needs AWS credentials or a Region, and neither
# calls AWS (sam's only outbound call is its weekly version check against PyPI).
export SAM_CLI_TELEMETRY=0

step "sam validate --lint"
sam validate --lint --template-file template.yaml

step "sam build (rust-cargolambda, arm64, cheap CI profile; into .aws-sam/ci-build)"
# sam build runs `cargo lambda build --release --arm64 --bin dynatrace-token-rotator`, linking
# with Zig from .tools/venv. This step checks that the template builds, not the artefact, so it
# swaps the release profile's size settings (opt-level "s", thin LTO, one codegen unit: slow on
# two cores) for the cheapest through cargo's CARGO_PROFILE_RELEASE_* variables, which sam and
# cargo-lambda pass on to cargo. Its own target directory keeps it from overwriting (and from
# forcing a rebuild of) a real release build in target/. The artefact benchmarked and deployed is
# built with the real release profile: `cargo lambda build --release --arm64`, or `sam build`
# without these variables (README, "Building and deploying"); this one goes to .aws-sam/ci-build,
# not to .aws-sam/build, where `sam deploy` would pick it up. (--build-in-source: the only mode
# of rust-cargolambda; said explicitly so sam does not print that it overrides the default.)
CARGO_TARGET_DIR="$root/target/sam-build" \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=0 \
    CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    sam build --build-in-source --template-file template.yaml --build-dir .aws-sam/ci-build

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
