#!/usr/bin/env bash
# Packs what bench/gpu.sh needs on a GPU machine that has no internet (and takes at most
# 64 MiB per transfer) into .gpu/part-*: the stripped CUDA build of lai with its llama.cpp
# libraries, the models the benchmark uses, and the CPU ONNX Runtime for the embed stage
# (the CUDA ONNX Runtime is 299 MB; embeddings run on the GPU machine's CPU cores instead).
#
#   bench/gpu-bundle.sh            # builds the CUDA binary first if needed (long on 2 cores)
#
# On the GPU machine, with every part in .gpu/:
#   cat .gpu/part-* | tar xzf - -C /tmp/lai-gpu && \
#     LAI=/tmp/lai-gpu/bin/lai LAI_MODELS_DIR=/tmp/lai-gpu/models \
#     LAI_ONNXRUNTIME=/tmp/lai-gpu/models/onnxruntime/libonnxruntime.so.1.31.1 bench/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x target/cuda/release/lai ] || scripts/build-cuda.sh --quiet
python3 scripts/fetch-models.py whisper-tiny-en smollm2-135m-instruct all-minilm-l6-v2 onnxruntime >/dev/null
models=$(target/release/lai models list 2>/dev/null | sed -n 's/^models directory: \(.*\) (catalog.*/\1/p')
models=${models:-${LAI_MODELS_DIR:-$HOME/.local/share/lai/models}}
stage=target/gpu-bundle
rm -rf "$stage" .gpu && mkdir -p "$stage/bin" "$stage/models" .gpu
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude
cp target/cuda/release/lai "$stage/bin/"
cp -P target/cuda/release/lib*.so* "$stage/bin/" 2>/dev/null || true
# The llama.cpp libraries the binary was linked with (rpath $ORIGIN finds them beside it).
for lib in $(ldd target/cuda/release/lai | awk '/lib(llama|ggml|mtmd)/ {print $3}'); do
  cp -L "$lib" "$stage/bin/"
done
strip --strip-unneeded "$stage/bin/"* 2>/dev/null || true
for m in whisper-tiny-en smollm2-135m-instruct all-minilm-l6-v2 onnxruntime; do
  cp -r "$models/$m" "$stage/models/"
done
# The fp32 embedding model only (the int8 copy is not used by the benchmark).
rm -f "$stage/models/all-minilm-l6-v2/model-int8.onnx"
tar -C "$stage" -cf - . | gzip -1 | split -b 60M -d - .gpu/part-
ls -la .gpu
du -sh "$stage"
