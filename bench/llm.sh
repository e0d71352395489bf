#!/usr/bin/env bash
# Batched LLM throughput: lai's `llm` stage at parallel = 1 (one prompt at a time), 4, 8 and 16
# on the same prompts, next to llama.cpp's own `llama-batched-bench` for the same model, thread
# count, prompt length and output length.
#
#   bench/llm.sh [ITEMS] [OUTPUT_TOKENS]        # defaults: 32 items, 64 tokens each
#   REPS=3 THREADS=2 bench/llm.sh               # best of REPS runs per setting (default 3)
#   MODEL=/models/any.gguf bench/llm.sh         # your own GGUF, by path (bench/larger-models.sh)
#
# llama-batched-bench is built once from a pinned llama.cpp source package with lai's CPU
# settings (scripts/llama-tools.sh), and cached in ~/.cache/lai/llama-tools. Each lai item is a prompt of about PROMPT tokens that asks for a long
# answer, limited to OUTPUT_TOKENS; throughput is measured over the stage's busy time from the
# run report (model loading excluded, as batched-bench excludes it). batched-bench decodes
# exactly OUTPUT_TOKENS per sequence and ignores end-of-text; lai stops a sequence at
# end-of-text and refills its slot, so the table counts the tokens each actually generated.
# Both use llama.cpp's default attention (flash attention where the CPU backend supports it).
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS=${1:-32}
TG=${2:-64}
THREADS=${THREADS:-$(nproc)}
REPS=${REPS:-3}
# Context per sequence, the same for both (batched-bench gives each of its 16 sequences 1/16 of -c).
CONTEXT=512
MODEL_NAME=smollm2-135m-instruct
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/lai/bench
mkdir -p "$CACHE"

cargo build --release --locked -q
LAI=$PWD/target/release/lai
if [ -z "${MODEL:-}" ]; then
  python3 scripts/fetch-models.py "$MODEL_NAME" >/dev/null
  MODELS=$("$LAI" models list | sed -n 's/^models directory: \(.*\) (catalog.*/\1/p')
  MODEL=$MODELS/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
fi
[ -f "$MODEL" ] || { echo "error: $MODEL is missing; run python3 scripts/fetch-models.py $MODEL_NAME" >&2; exit 2; }
export MODEL

# llama-batched-bench: built once from a pinned llama.cpp source package (scripts/llama-tools.sh).
BENCH_BIN=$(scripts/llama-tools.sh llama-batched-bench)/llama-batched-bench

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The prompts: one topic each, padded with context to a realistic length.
python3 - "$ITEMS" > "$WORK/prompts.jsonl" <<'EOF'
import json, sys
topics = ["a lighthouse keeper", "a lost robot", "the history of bread", "a mountain village",
          "a chess tournament", "the deep sea", "a desert caravan", "an old library"]
context = ("Write in plain English for a general audience, in full sentences and several "
           "paragraphs, with concrete details, names and places, and do not use lists. ")
for i in range(int(sys.argv[1])):
    text = f"Write a long story about {topics[i % len(topics)]} (story {i}). " + context * 2
    print(json.dumps({"id": f"p{i:03}", "text": text}))
EOF

run_lai() { # parallel -> "items tokens prompt_tokens busy_s"
  cat > "$WORK/p$1.toml" <<EOF
name = "bench"
[input]
kind = "files"
[[stage]]
use = "llm"
model = { path = "$MODEL" }
prompt = "{{text}}"
parallel = $1
batch_size = $ITEMS
max_wait = "1s"
max_tokens = $TG
context = $CONTEXT
[[output]]
kind = "jsonl"
path = "{out}/out.jsonl"
EOF
  "$LAI" run "$WORK/p$1.toml" "$WORK/prompts.jsonl" -o "$WORK/out$1" --fresh --jobs "$THREADS" \
    --progress never --quiet --report "$WORK/r$1.json" >/dev/null 2>&1
  python3 - "$WORK/out$1/out.jsonl" "$WORK/r$1.json" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
report = json.load(open(sys.argv[2]))
stage = next(s for s in report["stages"] if s["stage"] == "llm")
tokens = sum(r["llm"]["completion"]["tokens"] for r in recs)
prompt = sum(r["llm"]["completion"]["prompt_tokens"] for r in recs)
print(len(recs), tokens, prompt, stage["busy_s"])
EOF
}

# Best of REPS rounds; each round runs lai at every `parallel`, then llama-batched-bench, so
# both see the same machine (a shared machine's noise only ever slows a run down).
declare -A ITEMS_OUT TOKENS PROMPT BUSY
for _ in $(seq "$REPS"); do
  for p in 1 4 8 16; do
    read -r n t pr b < <(run_lai $p)
    if [ -z "${BUSY[$p]:-}" ] || python3 -c "import sys; sys.exit(not $b < ${BUSY[$p]})"; then
      ITEMS_OUT[$p]=$n TOKENS[$p]=$t PROMPT[$p]=$pr BUSY[$p]=$b
    fi
  done
  # llama.cpp's batched bench: same model, threads, prompt and output lengths.
  PP=$(( PROMPT[1] / ITEMS_OUT[1] ))
  "$BENCH_BIN" -m "$MODEL" -c $(( 16 * CONTEXT )) -b 512 -ub 512 -t "$THREADS" \
    -npp "$PP" -ntg "$TG" -npl 1,4,8,16 --output-format jsonl 2>&1 | grep '^{' >> "$WORK/llama.jsonl"
done

python3 - "$WORK/llama.jsonl" "$PP" "$TG" "$ITEMS" "$THREADS" "$REPS" \
  "${ITEMS_OUT[1]} ${TOKENS[1]} ${PROMPT[1]} ${BUSY[1]}" \
  "${ITEMS_OUT[4]} ${TOKENS[4]} ${PROMPT[4]} ${BUSY[4]}" \
  "${ITEMS_OUT[8]} ${TOKENS[8]} ${PROMPT[8]} ${BUSY[8]}" \
  "${ITEMS_OUT[16]} ${TOKENS[16]} ${PROMPT[16]} ${BUSY[16]}" <<'EOF'
import json, os, sys
llama = {}
for r in map(json.loads, open(sys.argv[1])):
    if r["pl"] not in llama or r["speed"] > llama[r["pl"]]["speed"]:
        llama[r["pl"]] = r
pp, tg, items, threads, reps = sys.argv[2:7]
model = os.path.basename(os.environ["MODEL"])
rows = []
for p, fields in zip([1, 4, 8, 16], sys.argv[7:]):
    n, tokens, prompt, busy = fields.split()
    n, tokens, prompt, busy = int(n), int(tokens), int(prompt), float(busy)
    rows.append((p, n, tokens, prompt, busy))
print(f"llm throughput: {model}, {items} prompts of ~{pp} tokens, up to {tg} output tokens, {threads} threads, best of {reps}")
print()
print(f"{'parallel':>8}  {'lai items/s':>11}  {'lai gen tok/s':>13}  {'lai all tok/s':>13}  {'lai vs p=1':>10}  {'llama.cpp S t/s':>15}  {'llama.cpp vs p=1':>16}  {'lai / llama.cpp':>15}")
_, _, tokens1, prompt1, busy1 = rows[0]
base = (tokens1 + prompt1) / busy1
ref_base = llama[1]["speed"]
for p, n, tokens, prompt, busy in rows:
    gen = tokens / busy
    total = (tokens + prompt) / busy
    ref = llama[p]["speed"]
    print(f"{p:>8}  {n / busy:>11.2f}  {gen:>13.1f}  {total:>13.1f}  {total / base:>9.2f}x  {ref:>15.1f}  {ref / ref_base:>15.2f}x  {total / ref:>14.2f}x")
print()
print("gen tok/s: generated tokens per second of the stage's busy time; all tok/s: prompt and")
print("generated tokens per second, the measure llama-batched-bench reports as S (npl = parallel,")
print("PP prompt and TG output tokens per sequence). \"vs p=1\" is the one-at-a-time loop:")
print("parallel = 1 decodes one item after the other, the way a script calling llama.cpp per")
print("prompt would, without the model reload.")
EOF
