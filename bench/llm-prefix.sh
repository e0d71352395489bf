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

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
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

run_lai() { # task cache -> "items prompt_tokens cached_prompt_tokens busy_s"
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
prefix_cache = $2
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
    for cache in false true; do
      read -r n p c b < <(run_lai $task $cache)
      key=$task-$cache
      if [ -z "${BEST[$key]:-}" ] || python3 -c "import sys; sys.exit(not $b < ${BEST[$key]##* })"; then
        BEST[$key]="$n $p $c $b"
      fi
    done
  done
done

echo "llm shared prompt prefix: SmolLM2-135M Q4_1, 32 held-out tickets, parallel $PARALLEL, $THREADS threads, best of $REPS"
echo
printf "%-9s %-12s %12s %14s %9s %8s %9s %10s\n" task prefix_cache "prompt tok/item" "decoded tok/item" busy_s items/s speed-up identical
for task in classify extract; do
  read -r _ _ _ off_busy <<<"${BEST[$task-false]}"
  for cache in false true; do
    read -r n p c b <<<"${BEST[$task-$cache]}"
    same=$(python3 - "$WORK/out-$task-false/out.jsonl" "$WORK/out-$task-$cache/out.jsonl" <<'EOF'
import json, sys
def records(path):  # without the run's own provenance
    return [{k: v for k, v in json.loads(l).items() if k != "_lai"} for l in open(path)]
print("yes" if records(sys.argv[1]) == records(sys.argv[2]) else "NO")
EOF
)
    python3 -c "n,p,c,b,off=$n,$p,$c,$b,$off_busy; print(f'{\"$task\":<9} {\"$cache\":<12} {p/n:>15.1f} {(p-c)/n:>16.1f} {b:>9.2f} {n/b:>8.2f} {off/b:>8.2f}x {\"$same\":>10}')"
  done
done
