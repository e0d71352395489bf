# Included by CMake after `project()` of every CMake build cargo runs (CMAKE_PROJECT_INCLUDE in
# .cargo/config.toml; whisper-rs-sys passes CMAKE_* variables to CMake). For whisper.cpp alone, it
# builds ggml from whisper.cpp 1.8.5 instead of the 1.8.3 copy whisper-rs-sys 0.15 vendors:
# 1.8.5's ggml has a tiled flash-attention kernel for the CPU that encodes a Whisper window in
# about 30 % less time (README, "Speed"). scripts/deps.sh puts those sources in the cache, pinned
# by the sha256 of the PyPI archive they come from. The CUDA build keeps the vendored ggml, whose
# CUDA kernels were measured on a GPU (see scripts/build-cuda.sh). It also changes one line of
# whisper.cpp's source (below, LAI_WHISPER_PATCH).
if (PROJECT_NAME STREQUAL "whisper.cpp" AND NOT TARGET ggml AND NOT GGML_CUDA)
    if (DEFINED ENV{XDG_CACHE_HOME} AND NOT "$ENV{XDG_CACHE_HOME}" STREQUAL "")
        set(LAI_GGML_DIR "$ENV{XDG_CACHE_HOME}/lai/ggml-whisper-1.8.5")
    else()
        set(LAI_GGML_DIR "$ENV{HOME}/.cache/lai/ggml-whisper-1.8.5")
    endif()
    if (NOT EXISTS "${LAI_GGML_DIR}/CMakeLists.txt")
        message(FATAL_ERROR "lai builds whisper.cpp with ggml 1.8.5, which is not at ${LAI_GGML_DIR}: run scripts/deps.sh (it downloads and checks it once)")
    endif()
    # ggml for the instruction set extensions of the CPU it is built on, as whisper.cpp builds by
    # default (GGML_NATIVE, which .cargo/config.toml turns off), but never AMX, whose tile
    # instructions this machine refuses (SIGILL). AVX-512 encodes a window about 25 % faster here.
    # A GGML_ variable set in the environment wins: GGML_AVX512=OFF GGML_AVX512_VNNI=OFF ... for a
    # binary that must run on older CPUs (then `cargo clean -p whisper-rs-sys` first).
    if (EXISTS "/proc/cpuinfo")
        file(STRINGS "/proc/cpuinfo" LAI_CPU_FLAGS REGEX "^flags" LIMIT_COUNT 1)
        foreach (pair "avx512f:GGML_AVX512" "avx512_vnni:GGML_AVX512_VNNI" "avx512vbmi:GGML_AVX512_VBMI"
                      "avx512_bf16:GGML_AVX512_BF16" "avx_vnni:GGML_AVX_VNNI")
            string(REPLACE ":" ";" pair "${pair}")
            list(GET pair 0 flag)
            list(GET pair 1 option)
            if (NOT DEFINED ${option} AND " ${LAI_CPU_FLAGS} " MATCHES "[ \t]${flag}[ \t]")
                set(${option} ON CACHE BOOL "the CPU lai is built on has ${flag}")
                message(STATUS "lai: ${option} (the CPU has ${flag})")
            endif()
        endforeach()
    endif()
    message(STATUS "lai: whisper.cpp with the ggml in ${LAI_GGML_DIR}")
    add_subdirectory("${LAI_GGML_DIR}" ggml)
    # The encoder's keys and values in F32, not F16 (whisper.cpp's `kv_pad`): ggml's tiled
    # flash-attention kernel converts F16 keys and values to F32 again for every tile of
    # queries, about 7 % of the long file's CPU time in the benchmark (README, "Speed"); peak
    # memory is about 30 MiB higher. The decoder's caches stay F16. This edits the copy of whisper.cpp's source that
    # whisper-rs-sys (pinned) builds in cargo's target directory, nothing else; LAI_WHISPER_PATCH
    # = OFF leaves the source as it is (bench/transcribe.sh builds whisper.cpp's CLI so, as
    # whisper.cpp ships it).
    option(LAI_WHISPER_PATCH "lai: whisper.cpp keeps the encoder's keys and values in F32" ON)
    if (LAI_WHISPER_PATCH)
        set(lai_source "${PROJECT_SOURCE_DIR}/src/whisper.cpp")
        file(READ "${lai_source}" lai_text)
        set(lai_f16 "whisper_kv_cache_init(state->kv_pad, state->backends[0], ctx->itype,")
        set(lai_f32 "whisper_kv_cache_init(state->kv_pad, state->backends[0], GGML_TYPE_F32,")
        string(FIND "${lai_text}" "${lai_f32}" lai_done)
        if (lai_done EQUAL -1)
            string(FIND "${lai_text}" "${lai_f16}" lai_at)
            if (lai_at EQUAL -1)
                message(FATAL_ERROR "lai: ${lai_source} has no `${lai_f16}` to change (is whisper-rs-sys still the version Cargo.toml pins?)")
            endif()
            string(REPLACE "${lai_f16}" "${lai_f32}" lai_text "${lai_text}")
            file(WRITE "${lai_source}" "${lai_text}")
        endif()
        message(STATUS "lai: whisper.cpp keeps the encoder's keys and values in F32")
    endif()
endif()
