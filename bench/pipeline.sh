#!/usr/bin/env bash
# A multi-stage pipeline against its stages run alone, on the CPU, on the same inputs.
#
#   bench/pipeline.sh [ROUNDS] [DOCUMENTS] [THREADS]     default: 2 rounds, 500 documents, nproc
#
# Two chains, built from the stages of the shipped pipeline files (as shipped, VAD and NER on):
#   - speech:    transcribe -> llm cleanup -> embed (of `clean_text`), on the 48 clips of
#                bench/transcribe.sh's generated folder (many voices, rates and containers);
#   - documents: redact -> embed (of the redacted text), on DOCUMENTS Faker letters and notes
#                (bench/py/pii_corpus.py, seed 11: not the seed bench/pii.sh scores on).
# Each stage runs alone as its own `lai run` (reading the previous stage's JSONL), then the
# whole chain as one `lai run`; whole processes, model loads included, `--jobs THREADS`, in turn,
# ROUNDS times; the table shows medians. It prints each run's items/s and two ratios:
#   - whole / slowest stage: the issue's target (>= 0.9x). On one CPU the stages share the same
#     cores, so this holds only when one stage does nearly all the work;
#   - whole / stages in turn: against running the stages one after another (the sum of their
#     times); above 1x, the pipeline overlaps their work (audio decoding, tokenisation and
#     writing beside the model calls, and no second model load or JSONL round trip).
# Needs the speech set (bench/transcribe.sh makes it once) and Faker (the peers' environment
# that bench/pii.sh and bench/embed.sh install under ~/.cache/lai/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
docs=${2:-500}
threads=${3:-$(nproc)}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/lai/bench
work=target/bench/pipeline
mkdir -p "$work"
clips=$cache/speech-set-1/clips
[ -d "$clips" ] || { echo "no speech set in $clips: run bench/transcribe.sh once to make it" >&2; exit 1; }
py=$cache/venv-peers/bin/python
if [ ! -x "$py" ] || ! "$py" -c "import faker" 2>/dev/null; then
  python3 -m venv "$cache/venv-peers"
  "$py" -m pip install --quiet "faker==40.54.0"
fi
corpus=$work/documents-$docs.jsonl
[ -s "$corpus" ] || "$py" bench/py/pii_corpus.py "$docs" 11 "$corpus"
python3 scripts/fetch-models.py whisper-tiny-en silero-vad smollm2-135m-instruct \
  all-minilm-l6-v2 rampart-pii onnxruntime >/dev/null
cargo build --release --quiet
lai=$PWD/target/release/lai

# The [[stage]] blocks of a shipped pipeline file.
stages() { sed -n '/^\[\[stage\]\]/,/^\[\[output\]\]/p' "pipelines/$1.toml" | sed '$d'; }
embed_clean=$(stages embed | sed 's/^field = "text"/field = "clean_text"/')
cleanup=$(stages transcribe-clean | sed -n '/use = "llm"/,$p' | sed '1i [[stage]]')
# compose NAME GLOB STAGES...: $work/NAME.toml, one JSONL output.
compose() {
  local name=$1 glob=$2
  shift 2
  {
    printf 'name = "%s"\n\n[input]\nkind = "files"\nglob = %s\n\n' "$name" "$glob"
    printf '%s\n\n' "$@"
    printf '[[output]]\nkind = "jsonl"\npath = "{out}/%s.jsonl"\n' "$name"
  } >"$work/$name.toml"
  "$lai" check "$work/$name.toml" >/dev/null
}
audio=$(python3 -c "import json, tomllib; print(json.dumps(tomllib.load(open('pipelines/transcribe.toml', 'rb'))['input']['glob']))")
compose transcribe "$audio" "$(stages transcribe)"
compose cleanup '["*.jsonl"]' "$cleanup"
compose embed-speech '["*.jsonl"]' "$embed_clean"
compose speech "$audio" "$(stages transcribe)" "$cleanup" "$embed_clean"
compose redact '["*.jsonl"]' "$(stages redact)"
compose embed-documents '["*.jsonl"]' "$(stages embed)"
compose documents '["*.jsonl"]' "$(stages redact)" "$(stages embed)"

# run NAME INPUT ROUND: one fresh run into $work/out-NAME; its wall seconds in $work/NAME-ROUND.s,
# its report beside.
run() {
  local start end
  start=$(date +%s.%N)
  "$lai" run "$work/$1.toml" "$2" -o "$work/out-$1" --fresh -q --jobs "$threads" \
    --report "$work/$1-$3.json" >/dev/null
  end=$(date +%s.%N)
  echo "$end - $start" | bc >"$work/$1-$3.s"
}
for r in $(seq 1 "$rounds"); do
  run transcribe "$clips" "$r"
  run cleanup "$work/out-transcribe/transcribe.jsonl" "$r"
  run embed-speech "$work/out-cleanup/cleanup.jsonl" "$r"
  run speech "$clips" "$r"
  run redact "$corpus" "$r"
  run embed-documents "$work/out-redact/redact.jsonl" "$r"
  run documents "$corpus" "$r"
done

python3 - "$work" "$rounds" "$threads" <<'PY'
import json, statistics, sys
work, rounds, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def median(name):
    return statistics.median(float(open(f"{work}/{name}-{r}.s").read()) for r in range(1, rounds + 1))
def report(name):
    return json.load(open(f"{work}/{name}-1.json"))
print(f"{rounds} rounds, --jobs {threads}, medians of whole processes (model loads included)")
for chain, label, alone in [
    ("speech", "transcribe -> cleanup -> embed", ["transcribe", "cleanup", "embed-speech"]),
    ("documents", "redact -> embed", ["redact", "embed-documents"]),
]:
    items = report(chain)["items"]["written"]
    print(f"\n{label}: {items} items")
    print(f"  {'run':<22} {'seconds':>8} {'items/s':>8}   stage busy % (round 1)")
    times = {}
    for name in alone + [chain]:
        r = report(name)
        times[name] = median(name)
        busy = "  ".join(f"{s['stage']} {s['busy_pct']:.0f}" for s in r["stages"])
        shown = "whole pipeline" if name == chain else f"{name.split('-')[0]} alone"
        print(f"  {shown:<22} {times[name]:8.2f} {r['items']['written'] / times[name]:8.2f}   {busy}")
    slowest = max(times[n] for n in alone)
    in_turn = sum(times[n] for n in alone)
    print(f"  whole / slowest stage:  {slowest / times[chain]:.2f}x  (target >= 0.9x)")
    print(f"  whole / stages in turn: {in_turn / times[chain]:.2f}x")
PY
