"""A real SIGKILL part-way through ingestion, then a re-run: the store ends as one clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ingest.job import IngestJob
from rag.index.lexical import open_lexical
from rag.index.store import open_store
from rag.settings import Settings
from tests.helpers import SAMPLE, VENV_BIN

pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def _synthetic(path: Path, n: int) -> str:
    with path.open("w") as fh:
        for i in range(n):
            abstract = " ".join(
                f"Study {i} reports finding {j} about regularisation strength {i * j % 11}."
                for j in range(4 + i % 9)
            )
            fh.write(
                json.dumps(
                    {"id": f"2402.{i:05d}", "title": f"Synthetic study {i}", "abstract": abstract}
                )
                + "\n"
            )
    return str(path)


def _run_until_batches(cmd: list[str], env: dict[str, str], batches: int) -> int:
    """Start ingestion, SIGKILL it once `batches` batches are logged; return batches seen."""
    proc = subprocess.Popen(
        cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    seen = 0
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("batch "):
            seen += 1
            if seen == batches:
                time.sleep(0.3)  # land the kill inside the next batch's embed/upsert
                os.kill(proc.pid, signal.SIGKILL)
                break
    proc.wait(60)
    return seen


def _snapshot(settings: Settings) -> dict[str, tuple]:
    store = open_store(settings)
    return {
        cid: (doc, json.dumps(meta, sort_keys=True))
        for cid, doc, meta in store.iter_chunks(include_documents=True)
    }


def test_killed_runs_then_rerun_equal_one_clean_run(tmp_path: Path, embeddings) -> None:
    synthetic = _synthetic(tmp_path / "synthetic.jsonl", 120)
    inputs = [str(SAMPLE), synthetic]
    data = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env["CITEQA_DATA_DIR"] = str(data)
    cmd = [str(VENV_BIN / "citeqa"), "ingest", *inputs, "--batch", "15", "--verbose", "--json"]

    assert _run_until_batches(cmd, env, 2) == 2
    partial = _snapshot(Settings(data_dir=data))
    assert 0 < len(partial)
    # Killed again later in the second attempt (earlier batches are now unchanged).
    assert _run_until_batches(cmd, env, 6) == 6
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    final = json.loads(done.stdout)
    assert final["papers_read"] == 181 and final["skipped"] == 0

    clean_settings = Settings(data_dir=tmp_path / "clean")
    IngestJob(open_store(clean_settings), embeddings, clean_settings, progress=False).run(inputs)

    killed_state = _snapshot(Settings(data_dir=data))
    clean_state = _snapshot(clean_settings)
    assert killed_state.keys() == clean_state.keys()
    assert killed_state == clean_state
    # No duplicates and no orphans: each paper holds exactly chunks 0..n-1.
    by_paper: dict[str, list[int]] = {}
    for _, meta_json in killed_state.values():
        meta = json.loads(meta_json)
        by_paper.setdefault(meta["paper_id"], []).append(meta["chunk_index"])
    assert len(by_paper) == 181
    for pid, idx in by_paper.items():
        n = json.loads(killed_state[f"{pid}#0"][1])["n_chunks"]
        assert sorted(idx) == list(range(n))
    # And a further run finds nothing to do.
    again = subprocess.run(
        cmd[:4] + ["--json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["chunks_written"] == 0
    # BM25 follows: ingestion only logs its changes in the store; the first reader
    # builds its index from the store, labelled with the store's current version and
    # holding exactly its chunks, and it answers as a reader over the clean store does.
    killed_settings = Settings(data_dir=data)
    killed_store = open_store(killed_settings)
    fresh = open_lexical(killed_store, killed_settings).get()
    assert fresh.version == killed_store.version()
    assert sorted(fresh.chunk_ids()) == sorted(clean_state)
    # A second reader on the same directory opens what the first committed.
    again = open_lexical(killed_store, killed_settings)
    assert sorted(again.get().chunk_ids()) == sorted(clean_state)
    assert again.stats.full_builds == 0 and again.stats.docs_added == 0
    clean_index = open_lexical(open_store(clean_settings), clean_settings).get()
    for query in ("regularisation strength study", "diffusion video generation", "agents"):
        assert [h.id for h in fresh.search(query, 10)] == [
            h.id for h in clean_index.search(query, 10)
        ]
