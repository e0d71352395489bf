#!/usr/bin/env bash
# Builds the CUDA build of lai into target/cuda/release/lai, on any x86-64 Linux machine: no GPU
# or driver is needed to build it. The CUDA 13.0 toolkit comes from the package registry
# (scripts/cuda-toolkit.py: pinned, sha256-checked, cached outside the repository); the binary
# runs on NVIDIA drivers 580 and newer. Extra arguments go to cargo.
#
#   CMAKE_CUDA_ARCHITECTURES  GPU architectures to compile for (default 90: H100/H200; e.g.
#                             "80;86;89;90" adds A100, RTX 30xx/A10, L4/RTX 40xx, at the cost of
#                             build time).
#   CMAKE_BUILD_PARALLEL_LEVEL  parallel compile jobs (default: all cores).
#
# ONNX stages on the GPU also need the CUDA ONNX Runtime: `python3 scripts/fetch-models.py
# onnxruntime-cuda`. At run time the CUDA libraries (cudart, cuBLAS; cuRAND and cuDNN for ONNX
# Runtime) are taken from the toolkit folder, else from the library path.
set -euo pipefail
cd "$(dirname "$0")/.."
toolkit=$(python3 scripts/cuda-toolkit.py)
export CUDA_PATH="$toolkit" CUDAToolkit_ROOT="$toolkit" PATH="$toolkit/bin:$PATH"
export CMAKE_CUDA_COMPILER="$toolkit/bin/nvcc"
export CMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-90}"
# whisper.cpp's ggml like llama.cpp's (feature `cuda-no-vmm`): no direct driver calls (Cargo.toml).
export GGML_CUDA_NO_VMM=ON
# whisper-rs-sys names cudart, cuBLAS and the driver to the linker: the toolkit's lib and its
# stubs (the driver is then dropped as unused).
export LIBRARY_PATH="$toolkit/lib:$toolkit/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
cargo build --release --locked --features cuda --target-dir target/cuda "$@"
echo "built target/cuda/release/lai (CUDA $(basename "$toolkit"), architectures $CMAKE_CUDA_ARCHITECTURES)"
