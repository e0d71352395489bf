#!/usr/bin/env bash
# Installs what building lai needs on a fresh Debian machine and is missing: cmake and libclang
# (bindgen, for whisper.cpp and llama.cpp), clippy and rustfmt. Needs root for apt-get; without
# it, fails at once with the exact command to run. Installs nothing that is already there.
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
