"""Embedding benchmark: chunks/s of the embedder (the figure that bounds ingest) and
single-query latency, for each path citeqa can take, against sentence-transformers
fp32 (the plain way, and the baseline) in the same run; plus each path's cosine
to the fp32 vectors, so speed is never bought with different embeddings.

    python -m evals.bench.embed [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from rag.settings import SAMPLE_CORPUS as SAMPLE

ROOT = Path(__file__).resolve().parents[2]


def _chunk_texts() -> list[str]:
    from ingest.chunk import chunk_paper, embed_text
    from ingest.loaders import Skipped, load
    from rag.settings import Settings

    cfg = Settings().chunking  # the chunks ingest embeds
    papers = [p for _, p in load(str(SAMPLE)) if not isinstance(p, Skipped)]
    return [
        embed_text(p, c, cfg.title) for p in papers for c in chunk_paper(p, cfg.size, cfg.overlap)
    ]


def run(repeats: int = 3) -> tuple[dict[str, Any], list[tuple]]:
    import torch
    from sentence_transformers import SentenceTransformer

    from rag.encode.embeddings import bf16_supported, local_model_path
    from rag.encode.onnx_embed import OnnxEncoder

    texts = _chunk_texts()
    queries = [t.split("\n", 1)[0][:120] for t in texts[:40]]
    path = local_model_path()
    st = SentenceTransformer(path, device="cpu")

    def st_fp32(batch: list[str], batch_size: int = 32) -> np.ndarray:
        return st.encode(
            batch, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )

    def st_bf16(batch: list[str]) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            v = st.encode(batch, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(v, dtype=np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        onnx = OnnxEncoder(path, Path(tmp)).load()
        int8 = OnnxEncoder(path, Path(tmp), int8=True).load()
        paths = {
            # What LangChain's HuggingFaceEmbeddings runs: encode() with its defaults.
            "sentence-transformers fp32, batch 32 (baseline)": st_fp32,
            "sentence-transformers fp32, batch 8": partial(st_fp32, batch_size=8),
            "onnxruntime fp32, passes of 64": partial(onnx.encode, batch_size=64),
            "onnxruntime fp32, passes of 8 (default)": onnx.encode,
            "onnxruntime int8 per-channel, passes of 8 (opt-in)": int8.encode,
        }
        if bf16_supported():
            paths["torch bf16 autocast, batch 32"] = st_bf16
        reference = st_fp32(texts)
        out: dict[str, Any] = {"texts": len(texts), "bf16_supported": bf16_supported()}
        secs: dict[str, list[float]] = {name: [] for name in paths}
        q_ms: dict[str, list[float]] = {name: [] for name in paths}
        vecs: dict[str, Any] = {}
        for fn in paths.values():
            fn(texts[:8])  # warm
        # Paths take turns within each repeat, so drift on a shared machine hits all alike.
        for _ in range(repeats):
            for name, fn in paths.items():
                t0 = time.perf_counter()
                vecs[name] = fn(texts)
                secs[name].append(time.perf_counter() - t0)
                for q in queries:
                    t0 = time.perf_counter()
                    fn([q])
                    q_ms[name].append((time.perf_counter() - t0) * 1000)
        for name in paths:
            cos = np.sum(np.asarray(vecs[name]) * reference, axis=1)
            out[name] = {
                "texts_per_s": round(len(texts) / statistics.median(secs[name]), 1),
                "runs_texts_per_s": [round(len(texts) / x, 1) for x in secs[name]],
                "query_ms_median": round(statistics.median(q_ms[name]), 2),
                "cosine_to_fp32_min": round(float(cos.min()), 5),
            }
    base = out["sentence-transformers fp32, batch 32 (baseline)"]
    rows = []
    for name in paths:
        r = out[name]
        rows.append(
            (
                name,
                f"{r['texts_per_s']} texts/s ({r['texts_per_s'] / base['texts_per_s']:.2f}x)",
                f"{r['query_ms_median']} ms "
                f"({base['query_ms_median'] / r['query_ms_median']:.2f}x)",
                r["cosine_to_fp32_min"],
            )
        )
    return out, rows


HEADER = ["embedding path", "batch throughput (vs baseline)", "one query (speed-up)", "min cosine"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    _, rows = run(args.repeats)
    print(" | ".join(HEADER))
    for row in rows:
        print(" | ".join(str(c) for c in row))


if __name__ == "__main__":
    main()
