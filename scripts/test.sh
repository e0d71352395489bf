#!/usr/bin/env bash
# The whole test suite, as CI runs it: models (fetched once, cached outside the repository),
# formatting, lints (warnings are errors), all tests. Engine tests use the real models.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
python3 scripts/fetch-models.py
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
