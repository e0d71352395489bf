#!/usr/bin/env bash
# Throughput and memory of the redact pipeline on generated JSONL (100k and 1M records).
#
#   bench/redact.sh [LINES...]      default: 100000 1000000
#
# Prints MB/s, items/s and peak RSS per size: the peak RSS column shows memory stays flat as
# the input grows ten-fold. Data is written under target/bench (not committed). Note other
# load on the machine when you quote these numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-100000 1000000}")
read -r -a sizes <<<"${sizes[*]}"
work=target/bench/redact
mkdir -p "$work"
# The shipped redact stage's rules (bench/pii.sh measures the NER model) with one JSONL output
# (per-record text files would measure the disk).
pipeline="$work/redact-jsonl.toml"
sed -e '/^\[\[output\]\]/,$d' -e '/^ner_/d' pipelines/redact.toml >"$pipeline"
printf '[[output]]\nkind = "jsonl"\npath = "{out}/redacted.jsonl"\n' >>"$pipeline"
cargo build --release --quiet
lai=target/release/lai

generate() {
  python3 - "$1" "$2" <<'PY'
import random, sys, json
n, path = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(42)
words = "the customer asked about the invoice and we agreed to call back tomorrow with details".split()
pii = [
    lambda i: f"user{i}@example.com",
    lambda i: f"+1 415 555 {i % 10000:04d}",
    lambda i: "4111 1111 1111 1111",
    lambda i: "DE89 3704 0044 0532 0130 00",
    lambda i: f"10.{i % 256}.{(i // 256) % 256}.7",
    lambda i: "123-45-6789",
    lambda i: f"https://example.com/t/{i}",
]
with open(path, "w") as f:
    for i in range(n):
        parts = [rnd.choice(words) for _ in range(rnd.randint(8, 40))]
        for _ in range(rnd.randint(0, 3)):
            parts.insert(rnd.randrange(len(parts) + 1), rnd.choice(pii)(i))
        f.write(json.dumps({"id": i, "text": " ".join(parts)}) + "\n")
PY
}

printf '%-10s %10s %9s %10s %12s %12s\n' lines MB seconds MB/s items/s peak_RSS_MB
for n in "${sizes[@]}"; do
  input="$work/in-$n.jsonl"
  [ -s "$input" ] || generate "$n" "$input"
  bytes=$(stat -c %s "$input")
  report="$work/report-$n.json"
  start=$(date +%s.%N)
  "$lai" run "$pipeline" "$input" -o "$work/out-$n" -q --fresh --report "$report" || true
  end=$(date +%s.%N)
  python3 - "$n" "$bytes" "$start" "$end" "$report" <<'PY'
import json, sys
n, size, start, end, report = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
r = json.load(open(report))
secs = end - start
print(f"{n:<10} {size/1e6:10.1f} {secs:9.2f} {size/1e6/secs:10.1f} {n/secs:12.0f} {r['peak_rss_bytes']/1e6:12.1f}")
PY
done
echo "machine: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
