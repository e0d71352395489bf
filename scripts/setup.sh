#!/usr/bin/env bash
# Sets lai up on a fresh machine and runs the sample job: builds the release binary, then
# redacts the shipped samples into ./lai-out (records, per-document copies, a CSV summary and a
# run report). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
./target/release/lai check pipelines/*.toml
./target/release/lai run pipelines/redact.toml samples/docs samples/tickets.jsonl \
  -o lai-out --report lai-out/report.json
echo
echo "Done. Look at lai-out/redacted.jsonl, lai-out/redacted/ and lai-out/report.json."
