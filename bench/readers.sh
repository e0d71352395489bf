#!/usr/bin/env bash
# Input readers: documents (PDF pages, DOCX, HTML, e-mails with attachments), scans read by OCR,
# CSV rows and Parquet rows read per second, with peak memory, by the release build.
#
#   bench/readers.sh [COPIES] [ROWS] [ROUNDS] [SCANS]
#       default: 500 document sets, 200,000 rows, 3 rounds, 10 copies of each sample scan
#
# The documents are scripts/make-documents.py's samples, COPIES times with their numbers varied:
# per set a 2-page PDF letter, a DOCX, an HTML page and an e-mail with a 1-page PDF and a text
# attachment (5 files, 6 items, 3 PDF pages). The CSV has ROWS tickets (id, subject, body,
# priority; bodies of 60-400 characters); the Parquet file holds the same rows (written by lai's
# parquet output from the CSV, untimed). Each run reads and passes every item through `redact`
# with the e-mail rule alone (the cheapest stage there is), writes JSONL and the ledger, --fresh,
# one thread; the table shows the median wall time of ROUNDS whole processes.
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-500}
rows=${2:-200000}
rounds=${3:-3}
scans=${4:-10}
work=target/bench/readers
mkdir -p "$work"
cargo build --release --quiet
lai=$PWD/target/release/lai

rm -rf "$work/docs" && python3 scripts/make-documents.py "$work/docs" --copies "$copies"
python3 - "$work/tickets.csv" "$rows" <<'PY'
import csv, random, sys
random.seed(1)
words = "printer login password invoice refund delivery screen laptop account error network update".split()
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "subject", "body", "priority"])
    for i in range(int(sys.argv[2])):
        body = " ".join(random.choice(words) for _ in range(random.randint(10, 60)))
        w.writerow([f"T-{i}", random.choice(words).title(), body + f", mail user{i}@example.com", random.choice(["low", "high"])])
PY

# Scans: the sample scanned fax (a PDF page that is an image) and faxed note (PNG), SCANS each.
rm -rf "$work/scans" && mkdir -p "$work/scans"
for i in $(seq "$scans"); do
  cp samples/documents/scanned-fax.pdf "$work/scans/fax-$i.pdf"
  cp samples/documents/faxed-note.png "$work/scans/note-$i.png"
done

# The same rows as Parquet: the CSV through lai's parquet output, the text columns kept apart.
cat >"$work/to-parquet.toml" <<'TOML'
name = "to-parquet"
[input]
kind = "files"
[[stage]]
use = "redact"
fields = ["subject"]
entities = ["email"]
[[output]]
kind = "parquet"
path = "{out}/tickets.parquet"
columns = ["subject", "body", "priority"]
TOML
rm -rf "$work/out-to-parquet"
"$lai" run "$work/to-parquet.toml" "$work/tickets.csv" -o "$work/out-to-parquet" -q >/dev/null
cp "$work/out-to-parquet/tickets.parquet" "$work/tickets.parquet"

for kind in docs scans csv parquet; do
  case $kind in
    docs) glob='["**/*.pdf", "**/*.docx", "**/*.html", "**/*.eml"]'; input=$work/docs ;;
    scans) glob='["**/*.pdf", "**/*.png"]'; input=$work/scans ;;
    csv) glob='["**/*.csv"]'; input=$work/tickets.csv ;;
    parquet) glob='["**/*.parquet"]'; input=$work/tickets.parquet ;;
  esac
  cat >"$work/$kind.toml" <<TOML
name = "readers-$kind"
[input]
kind = "files"
glob = $glob
text_columns = ["subject", "body"]
[[stage]]
use = "redact"
entities = ["email"]
[[output]]
kind = "jsonl"
path = "{out}/out.jsonl"
TOML
  : >"$work/$kind.times"
  for _ in $(seq "$rounds"); do
    start=$(date +%s.%N)
    "$lai" run "$work/$kind.toml" "$input" -o "$work/out-$kind" --fresh -q --jobs 1 \
      --report "$work/$kind.json" >/dev/null 2>&1 || true
    end=$(date +%s.%N)
    python3 -c "print($end - $start)" >>"$work/$kind.times"
  done
done

python3 - "$work" "$copies" "$rows" "$rounds" "$scans" <<'PY'
import json, statistics, sys
work, copies, rows, rounds, scans = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
print(f"input readers, release build, 1 thread, median of {rounds} whole processes\n")
print("| input | items | unit | per second | wall s | peak memory |")
print("|---|---|---|---|---|---|")
for kind, units, unit in [("docs", 3 * copies, "PDF pages"), ("scans", 2 * scans, "OCR pages"),
                          ("csv", rows, "rows"), ("parquet", rows, "rows")]:
    report = json.load(open(f"{work}/{kind}.json"))
    wall = statistics.median(float(t) for t in open(f"{work}/{kind}.times"))
    items = report["items"]["read"]
    extra = f"; {items / wall:.0f} items/s" if kind == "docs" else ""
    rate = units / wall
    rate = f"{rate:.0f}" if rate >= 10 else f"{rate:.2f}"
    print(f"| {kind} | {items} | {units} {unit} | {rate}{extra} | {wall:.2f} | "
          f"{report['peak_rss_bytes'] / 2**20:.0f} MiB |")
PY
