#!/usr/bin/env bash
# The whole test suite, as CI runs it: models (fetched once, cached outside the repository),
# formatting, lints (warnings are errors), all tests. Engine tests use the real models; the
# remote-backend tests use llama.cpp's own llama-server (built once, cached outside the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
python3 scripts/fetch-models.py
LAI_LLAMA_SERVER=$(scripts/llama-tools.sh llama-server)/llama-server
export LAI_LLAMA_SERVER
cargo fmt --all -- --check
# Lints with the test profile, so that the build scripts (whisper.cpp and llama.cpp, about 15 CPU
# minutes) and their dependencies are built once for both commands.
cargo clippy --locked --all-targets --profile test -- -D warnings
cargo test --locked
