"""The embedding paths agree: onnxruntime (queries, small batches, and ingest where
the CPU has no native bf16) and sentence-transformers give the same vectors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from rag.encode.embeddings import LocalEmbeddings, bf16_supported, local_model_path, make_embeddings
from rag.settings import Settings

TEXTS = [
    "How do random forests smooth their predictions?",
    "HelixSurf alternates multi-view stereo and neural implicit surfaces to reconstruct "
    "indoor scenes, regularising each with the other, and runs far faster than before.",
    "x",
]


def test_onnx_and_torch_give_the_same_vectors(tmp_path: Path) -> None:
    path = local_model_path()
    torch_only = LocalEmbeddings(path, query_backend="torch")
    onnx = LocalEmbeddings(path, query_backend="onnx", cache_dir=tmp_path / "cache")
    a = np.array(torch_only.embed_documents(TEXTS * 3))
    b = np.array(onnx.embed_documents(TEXTS * 3))
    assert a.shape == b.shape == (9, 384)
    assert np.all(np.sum(a * b, axis=1) > 0.9999)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    q = np.array(onnx.embed_query(TEXTS[0]))
    assert float(q @ a[0]) > 0.9999
    # The ONNX graph was exported once, into the cache, and is reused from there.
    files = list((tmp_path / "cache").glob("*.onnx"))
    assert len(files) == 1
    again = LocalEmbeddings(path, query_backend="onnx", cache_dir=tmp_path / "cache")
    mtime = files[0].stat().st_mtime
    again.embed_query("reuse")
    assert files[0].stat().st_mtime == mtime
    # Only the ONNX path ran: torch's model was never loaded.
    assert onnx._model is None


def test_settings_choose_the_paths(tmp_path: Path) -> None:
    emb = LocalEmbeddings(local_model_path(), precision="fp32", query_backend="torch")
    assert emb.bf16 is False and emb._fast() is None
    auto = LocalEmbeddings(local_model_path(), precision="auto")
    assert auto.bf16 == bf16_supported()
    assert Settings(data_dir=tmp_path).embedding.query_backend == "auto"


def test_int8_is_opt_in_for_bulk_batches_and_queries_stay_fp32(tmp_path: Path) -> None:
    path = local_model_path()
    cache = tmp_path / "cache"
    fp32 = LocalEmbeddings(path, query_backend="onnx", precision="fp32", cache_dir=cache)
    int8 = LocalEmbeddings(path, query_backend="onnx", precision="int8", cache_dir=cache)
    assert int8.int8 and not fp32.int8
    assert LocalEmbeddings(path, precision="auto", cache_dir=cache).int8 is False
    batch = [f"{t} (variant {i})" for i in range(12) for t in TEXTS]  # > SMALL_BATCH texts
    a = np.array(fp32.embed_documents(batch))
    b = np.array(int8.embed_documents(batch))
    cos = np.sum(a * b, axis=1)
    # Per-channel int8 stays close to fp32, but it is not fp32: the bulk path did run.
    assert cos.min() > 0.97, cos.min()
    assert cos.mean() < 0.99999
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    # Queries (and small batches) never take the int8 graph.
    q32, q8 = np.array(fp32.embed_query(TEXTS[1])), np.array(int8.embed_query(TEXTS[1]))
    assert float(q32 @ q8) > 0.99999
    assert sorted(p.name.endswith("-int8pc.onnx") for p in cache.glob("*.onnx")) == [False, True]


def test_forward_passes_are_small_and_keep_the_input_order(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedding={"forward_batch": 3, "cache_dir": tmp_path})
    emb = make_embeddings(settings)
    assert isinstance(emb, LocalEmbeddings) and emb.batch_size == 3
    encoder = emb._fast()
    widths: list[int] = []
    run = encoder._session.run

    def spy(names: list[str], feed: dict) -> list:
        widths.append(len(feed["input_ids"]))
        return run(names, feed)

    encoder._session = SimpleNamespace(run=spy)
    texts = [f"{t} ({i})" for i, t in enumerate(TEXTS * 3)]
    small = np.array(emb.embed_documents(texts))
    assert widths == [3, 3, 3]  # 9 texts, passes of at most 3
    whole = encoder.encode(texts, batch_size=64)
    assert np.allclose(small, whole, atol=1e-5)  # sorted by length, returned in input order


def test_threads_wait_passively_unless_spinning_is_asked_for(tmp_path: Path) -> None:
    """Busy-waiting threads make the encoder several times slower when other jobs share
    the cores (`python -m evals.bench.contention`), so they sleep by default."""
    key = "session.intra_op.allow_spinning"
    cache = tmp_path / "cache"
    spins = {}
    for spin in (False, True):
        settings = Settings(data_dir=tmp_path, embedding={"cache_dir": cache, "spin_wait": spin})
        emb = make_embeddings(settings)
        emb.embed_query("x")
        spins[spin] = emb._fast()._session.get_session_options().get_session_config_entry(key)
    assert spins == {False: "0", True: "1"}
    assert Settings(data_dir=tmp_path).embedding.spin_wait is False


def test_openmp_is_told_to_wait_passively_before_torch_loads() -> None:
    import subprocess
    import sys

    probe = (
        "import os, sys; from rag.encode.embeddings import passive_openmp as p; "
        "os.environ.pop('OMP_WAIT_POLICY', None); first = p(); "
        "print(first, os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules); "
        "os.environ['OMP_WAIT_POLICY'] = 'ACTIVE'; import torch; "
        "print(p(), os.environ['OMP_WAIT_POLICY'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split("\n")
    # Set before torch loads; an explicit choice in the environment is kept; once torch
    # is loaded it is too late, and the function says so.
    assert out[0] == "True PASSIVE False" and out[1] == "False ACTIVE"
