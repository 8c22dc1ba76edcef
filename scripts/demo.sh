#!/usr/bin/env bash
# Local sandbox demo: rotates a Dynatrace token held in (emulated) Secrets Manager through the
# real Lambda binary under `cargo lambda watch`, against the Dynatrace emulator and moto.
# No AWS account or Dynatrace tenant needed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/tools.sh >/dev/null
export PATH="$root/.tools/venv/bin:$PATH"
exec cargo run -q -p rotator-sandbox --bin sandbox -- demo "$@"
