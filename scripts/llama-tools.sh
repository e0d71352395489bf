#!/usr/bin/env bash
# Builds llama.cpp's own tools (llama-server for the remote-backend tests, llama-batched-bench
# for bench/llm.sh) once, from the llama-cpp-python 0.3.36 source package on PyPI (pinned by
# sha256; llama-cpp-sys-2's crate ships llama.cpp without the tools' sources), with lai's CPU
# settings: portable AVX2, no OpenMP, no network libraries. Cached in ~/.cache/lai/llama-tools;
# prints the folder that holds the binaries.
#
#   scripts/llama-tools.sh llama-server [llama-batched-bench ...]
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 TARGET..." >&2; exit 2; }
LCP=llama_cpp_python-0.3.36
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/lai/llama-tools
BUILD=$CACHE/$LCP-build
mkdir -p "$CACHE"
missing=()
for target in "$@"; do
  [ -x "$BUILD/bin/$target" ] || missing+=("$target")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "building ${missing[*]} from the $LCP sdist (once, a few minutes)..." >&2
  sdist=$CACHE/$LCP.tar.gz
  if [ ! -f "$sdist" ]; then
    python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
      "https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/$LCP.tar.gz" \
      "$sdist.part"
    mv "$sdist.part" "$sdist"
  fi
  echo "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e  $sdist" | sha256sum -c --quiet
  [ -d "$CACHE/$LCP/vendor/llama.cpp" ] || tar xzf "$sdist" -C "$CACHE" "$LCP/vendor/llama.cpp"
  cmake -S "$CACHE/$LCP/vendor/llama.cpp" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_TOOLS=ON >/dev/null
  cmake --build "$BUILD" --target "${missing[@]}" -j "$(nproc)" >/dev/null
fi
echo "$BUILD/bin"
