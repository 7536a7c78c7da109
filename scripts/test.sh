#!/usr/bin/env bash
# The whole test suite: installs what it needs, then unit, conformance (local, Garage,
# s3s-fs), fault and end-to-end tests against real PostgreSQL 13/15/16/17 servers, and a real
# three-node Patroni cluster with etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
. scripts/env.sh
cargo build --release --workspace --all-targets
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# A hung test fails the run after 40 minutes instead of eating CI's whole budget.
timeout --kill-after=30s 40m cargo test --release --workspace -- --test-threads="${PGKEEP_TEST_THREADS:-4}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo's own last line is that of the last crate).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "pgkeep: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
