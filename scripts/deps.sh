#!/usr/bin/env bash
# Installs what building and running lai needs on a fresh Debian machine and is missing: cmake
# and libclang (bindgen, for whisper.cpp and llama.cpp), Tesseract with its English data and
# poppler's pdftoppm (OCR of scanned pages), clippy and rustfmt, and the ggml sources
# whisper.cpp is built with (scripts/whisper-ggml.cmake). Needs root for apt-get; without it, fails at once
# with the exact command to run. Installs nothing that is already there.
set -euo pipefail
if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed; install Rust first: https://rustup.rs" >&2
  exit 2
fi
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v c++ >/dev/null || missing+=(g++)
ls /usr/lib/x86_64-linux-gnu/libclang-14.so* /usr/lib/*/libclang-1[4-9].so* >/dev/null 2>&1 \
  || missing+=(libclang1-14)
ls -d /usr/lib/llvm-1[4-9]/lib/clang >/dev/null 2>&1 || missing+=(libclang-common-14-dev)
command -v tesseract >/dev/null || missing+=(tesseract-ocr)
ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata >/dev/null 2>&1 || missing+=(tesseract-ocr-eng)
command -v pdftoppm >/dev/null || missing+=(poppler-utils)
if [ ${#missing[@]} -gt 0 ]; then
  cmd="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then
    echo "installing build dependencies: ${missing[*]}" >&2
    sh -c "$cmd"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    echo "installing build dependencies: ${missing[*]}" >&2
    sudo sh -c "$cmd"
  else
    echo "error: building lai needs ${missing[*]}; install them as root:" >&2
    echo "  sudo sh -c '$cmd'" >&2
    exit 2
  fi
fi
if command -v rustup >/dev/null; then
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
fi

# ggml from whisper.cpp 1.8.5, out of the pywhispercpp 1.5.1 source archive on PyPI (pinned by
# sha256), into the cache where scripts/whisper-ggml.cmake finds it.
ggml=${XDG_CACHE_HOME:-$HOME/.cache}/lai/ggml-whisper-1.8.5
if [ ! -s "$ggml/CMakeLists.txt" ]; then
  echo "fetching ggml (whisper.cpp 1.8.5) into $ggml" >&2
  python3 - "$ggml" <<'PY'
import hashlib, io, pathlib, shutil, sys, tarfile, urllib.request
url = ("https://files.pythonhosted.org/packages/9f/35/610787a277e177e6b7983277a35a2969c0876b46c0d889bc6a0c4b4ac4a7/"
       "pywhispercpp-1.5.1.tar.gz")
sha256 = "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5"
try:
    data = urllib.request.urlopen(url, timeout=300).read()
except OSError as e:
    sys.exit(f"error: cannot download {url}: {e}; building lai needs it once (PyPI must be reachable)")
if hashlib.sha256(data).hexdigest() != sha256:
    sys.exit(f"error: {url} does not have the pinned sha256 {sha256}; not using it")
dest = pathlib.Path(sys.argv[1])
tmp = dest.with_name(dest.name + ".tmp")
shutil.rmtree(tmp, ignore_errors=True)
prefix = "pywhispercpp-1.5.1/whisper.cpp/ggml/"
with tarfile.open(fileobj=io.BytesIO(data)) as t:
    members = [m for m in t.getmembers() if m.name.startswith(prefix) and (m.isfile() or m.isdir())]
    for m in members:
        m.name = m.name[len(prefix):]
    t.extractall(tmp, members=[m for m in members if m.name])
shutil.rmtree(dest, ignore_errors=True)
tmp.rename(dest)
PY
fi
