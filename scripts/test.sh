#!/usr/bin/env bash
# The whole test suite: installs what it needs, then unit, conformance (local, Garage,
# s3s-fs), fault and end-to-end tests against real PostgreSQL 13/15/16/17 servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
. scripts/env.sh
cargo build --release --workspace --all-targets
cargo test --release --workspace -- --test-threads="${PGKEEP_TEST_THREADS:-4}"
