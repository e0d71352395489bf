#!/usr/bin/env bash
# The llm stage's shared prompt prefix on prompt-heavy tasks: the same items with
# `prefix_cache = true` (the default) and `false`, in turn, best of REPS, on the shipped
# held-out support tickets (samples/classify/held-out.jsonl, 32 items):
#   - classify, few-shot: a system message with the 32 labelled examples of
#     samples/classify/examples.csv, so nearly all of each prompt is shared;
#   - extract: the built-in task's short instructions and four fields.
# Prints per task the prompt tokens per item, those actually decoded per item (the run report's
# prompt_tokens minus cached_prompt_tokens), items per second of the stage's busy time, the
# speed-up, and whether the records are byte-identical (they must be: greedy decoding).
# The peer: llama.cpp's own llama-server (built by scripts/llama-tools.sh from the pinned
# llama-cpp-python sdist) serving the same GGUF file with PARALLEL slots, THREADS threads and the
# same context per slot, its prompt cache on (its default: a slot keeps the tokens of its last
# prompt and decodes only what differs), fed the same prompts by lai's own `endpoint` mode with
# PARALLEL requests in flight; its row gives the share of records whose answers (every field
# but the provenance) equal lai's.
#
#   bench/llm-prefix.sh                   # PARALLEL=8, REPS=3, THREADS=$(nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-$(nproc)}
REPS=${REPS:-3}
PARALLEL=${PARALLEL:-8}

cargo build --release --locked -q
LAI=${CARGO_TARGET_DIR:-$PWD/target}/release/lai
python3 scripts/fetch-models.py smollm2-135m-instruct >/dev/null

MODELS=$("$LAI" models list | sed -n 's/^models directory: \(.*\) (catalog.*/\1/p')
SERVER=$(scripts/llama-tools.sh llama-server)/llama-server
PORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$SERVER" -m "$MODELS/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf" --host 127.0.0.1 \
  --port "$PORT" -np "$PARALLEL" -c $((PARALLEL * 2048)) -t "$THREADS" --no-webui >/dev/null 2>&1 &
SERVER_PID=$!
WORK=$(mktemp -d)
trap 'kill $SERVER_PID 2>/dev/null; rm -rf "$WORK"' EXIT
until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null; do
  kill -0 $SERVER_PID 2>/dev/null || { echo "llama-server did not start" >&2; exit 1; }
  sleep 0.5
done
cp samples/classify/held-out.jsonl "$WORK/items.jsonl"

# The few-shot system message, as a TOML string.
SYSTEM=$(python3 - <<'EOF'
import csv, json
rows = list(csv.DictReader(open("samples/classify/examples.csv")))
labels = sorted({r["label"] for r in rows})
text = ("You label the tickets that customers send to a support desk. Each ticket gets exactly one "
        f"label: {', '.join(labels)}. Here are labelled examples.\n\n")
text += "\n".join(f"Ticket: {r['text']}\nLabel: {r['label']}" for r in rows)
print(json.dumps(text))
EOF
)
CHOICES=$(python3 -c "import csv, json; print(json.dumps(sorted({r['label'] for r in csv.DictReader(open('samples/classify/examples.csv'))})))")

declare -A STAGE
STAGE[classify]="task = \"classify\"
choices = $CHOICES
system = $SYSTEM"
STAGE[extract]="task = \"extract\"
fields = [\"name\", \"email\", \"phone\", \"date\"]"

run_lai() { # task cache|server -> "items prompt_tokens cached_prompt_tokens busy_s"
  if [ "$2" = server ]; then
    how="endpoint = \"http://127.0.0.1:$PORT/v1\"
served_model = \"smollm2\"
allow_unredacted = \"benchmark of the shipped sample tickets on this machine\""
  else
    how="prefix_cache = $2"
  fi
  cat > "$WORK/$1-$2.toml" <<EOF
name = "bench"
[input]
kind = "files"
[[stage]]
use = "llm"
${STAGE[$1]}
parallel = $PARALLEL
batch_size = 64
max_wait = "1s"
$how
[[output]]
kind = "jsonl"
path = "{out}/out.jsonl"
EOF
  rm -rf "$WORK/out-$1-$2"
  "$LAI" run "$WORK/$1-$2.toml" "$WORK/items.jsonl" -o "$WORK/out-$1-$2" --jobs "$THREADS" \
    --progress never --quiet --report "$WORK/r-$1-$2.json" >/dev/null 2>&1
  python3 - "$WORK/out-$1-$2/out.jsonl" "$WORK/r-$1-$2.json" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
stage = next(s for s in json.load(open(sys.argv[2]))["stages"] if s["stage"] == "llm")
print(len(recs), stage["prompt_tokens"], stage.get("cached_prompt_tokens", 0), stage["busy_s"])
EOF
}

# Best of REPS; each round runs both settings of both tasks, so they see the same machine.
declare -A BEST
for _ in $(seq "$REPS"); do
  for task in classify extract; do
    for cache in false true server; do
      read -r n p c b < <(run_lai $task $cache)
      key=$task-$cache
      if [ -z "${BEST[$key]:-}" ] || python3 -c "import sys; sys.exit(not $b < ${BEST[$key]##* })"; then
        BEST[$key]="$n $p $c $b"
      fi
    done
  done
done

echo "llm shared prompt prefix: SmolLM2-135M Q4_1, 32 held-out tickets, parallel $PARALLEL, $THREADS threads, best of $REPS"
echo "(prefix_cache \"server\": llama-server, $PARALLEL slots, fed by lai's endpoint mode; \"identical\": share of records with lai's answers)"
echo
printf "%-9s %-12s %12s %14s %9s %8s %9s %10s\n" task prefix_cache "prompt tok/item" "decoded tok/item" busy_s items/s "vs false" identical
for task in classify extract; do
  read -r _ _ _ off_busy <<<"${BEST[$task-false]}"
  for cache in false true server; do
    read -r n p c b <<<"${BEST[$task-$cache]}"
    same=$(python3 - "$WORK/out-$task-false/out.jsonl" "$WORK/out-$task-$cache/out.jsonl" "$cache" <<'EOF'
import json, sys
def records(path, drop):  # without the run's own provenance (and the llm stage's, for the server)
    return [{k: v for k, v in json.loads(l).items() if k not in drop} for l in open(path)]
if sys.argv[3] == "server":
    a, b = records(sys.argv[1], {"_lai", "llm"}), records(sys.argv[2], {"_lai", "llm"})
    print(f"{sum(x == y for x, y in zip(a, b))}/{len(a)}")
else:
    print("yes" if records(sys.argv[1], {"_lai"}) == records(sys.argv[2], {"_lai"}) else "NO")
EOF
)
    python3 -c "n,p,c,b,off=$n,$p,$c,$b,$off_busy; print(f'{\"$task\":<9} {\"$cache\":<12} {p/n:>15.1f} {(\"n/a\" if \"$cache\" == \"server\" else f\"{(p-c)/n:.1f}\"):>16} {b:>9.2f} {n/b:>8.2f} {off/b:>8.2f}x {\"$same\":>10}')"
  done
done
