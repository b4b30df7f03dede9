"""`citeqa ingest --engine ray` on a real two-node Ray cluster (two `ray start`
process trees on 127.0.0.2 and 127.0.0.3, one CPU each), a real `chroma run`
server and the real embedding model: an embedding worker SIGKILLed mid-run, and
the driver SIGKILLed mid-run then run again, each end in exactly the store of one
clean single-process ingest (ids, paper hashes, documents, metadata, vectors), with
the same records reported at the same file lines.

Corpus: 150 PubMed abstracts from ../shared (several chunks each) and 1,350
synthetic short papers (one chunk each), 1,500 papers and about 1,800 chunks, plus
a malformed line and a duplicate id, in a JSONL file read as ten byte ranges. The
model embeds about 36 texts/s per core here, so one pass costs well under a
minute and the whole module (cluster start, three passes and the reference) stays
within about four minutes on the 2-core machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from evals.dataset import SHARED_CORPORA
from evals.procs import ray_env, start_ray_node, stop_ray_node
from ingest.job import IngestJob
from rag.index.store import open_store
from rag.settings import Settings
from tests.helpers import ROOT, VENV_BIN, base_env, free_port, in_ci, start_chroma, stop

# Generous: the figures above are for an idle machine; a busy one is many times slower.
pytestmark = [pytest.mark.slow, pytest.mark.heavy, pytest.mark.timeout(1200)]

PUBMED = SHARED_CORPORA / "pubmedqa" / "corpus.jsonl"
N_PUBMED, N_SYNTHETIC = 150, 1350
EMBED_ACTOR = "ray::MapWorker(MapBatches(EmbedActor))"


def _need_ray() -> None:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        reason = "ray is not installed: pip install -e '.[ray]' (make test installs it)"
        if in_ci():
            pytest.fail(f"{reason} (required when CI=true)", pytrace=False)
        pytest.skip(reason)
    if not PUBMED.exists():
        pytest.skip(f"{PUBMED} is missing (shared/ beside the repository)")


def _corpus(path: Path) -> tuple[str, int, list[tuple[int, str]]]:
    """The input file, its paper count, and the (line, reason start) of its bad records."""
    lines = PUBMED.read_text(encoding="utf-8").splitlines()[:N_PUBMED]
    topics = ["sparse probes", "graph kernels", "cohort drift", "dose response", "retinal scans"]
    for i in range(N_SYNTHETIC):
        topic = topics[i % len(topics)]
        abstract = (
            f"We measure {topic} in setting {i} across {3 + i % 17} sites. "
            f"Variant {i % 23} improves recall by {i % 9 + 1} points over the baseline."
        )
        record = {"id": f"syn-{i:05d}", "title": f"Synthetic {topic} {i}", "abstract": abstract}
        lines.append(json.dumps(record))
    lines.insert(777, '{"id": "broken", "title": ')  # line 778
    lines.insert(1201, json.dumps({"id": "syn-00003", "title": "Again", "abstract": "Dup."}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path), N_PUBMED + N_SYNTHETIC, [(778, "not valid JSON"), (1202, "duplicate")]


def _snapshot(url: str, prefix: str) -> dict[str, tuple]:
    store = open_store(Settings(chroma_url=url, collection_prefix=prefix))
    coll = store._collection  # vectors too: the protocol has no call that returns them
    out: dict[str, tuple] = {}
    offset = 0
    while True:
        page = coll.get(include=["embeddings", "documents", "metadatas"], limit=1000, offset=offset)
        if not page["ids"]:
            return out
        for cid, vec, doc, meta in zip(
            page["ids"], page["embeddings"], page["documents"], page["metadatas"], strict=True
        ):
            out[cid] = (doc, json.dumps(meta, sort_keys=True), np.asarray(vec, dtype=np.float32))
        offset += len(page["ids"])


def _assert_same_store(got: dict[str, tuple], want: dict[str, tuple]) -> None:
    assert got.keys() == want.keys()
    for cid, (doc, meta, vec) in want.items():
        assert got[cid][0] == doc, cid
        assert got[cid][1] == meta, cid  # paper_hash, n_chunks, offsets, abstract ...
        # Texts are embedded in other groupings (an actor's batch against the local
        # job's slices: other padded lengths) on another thread count, which moves
        # the last digits (seen: up to 1.1e-3 in a dimension): the same vector to a
        # cosine of 0.9999. A vector of another text is far below that.
        a, b = got[cid][2], vec
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine > 0.9999, (cid, cosine)
        np.testing.assert_allclose(a, b, atol=5e-3, err_msg=cid)


def _embed_actor_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(EMBED_ACTOR):
                pids.append(int(entry))
    return pids


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A `chroma run` server and a two-node Ray cluster; yields the driver's env."""
    _need_ray()
    logs = tmp_path_factory.mktemp("ray-logs")
    chroma = start_chroma(tmp_path_factory.mktemp("chroma") / "db", port := free_port())
    # Ray's socket paths must stay short: its temp dir lives directly under /tmp.
    temp = tempfile.mkdtemp(prefix="citeqa-ray-", dir="/tmp")
    env = ray_env(base_env(), str(ROOT))
    ray_cli = str(VENV_BIN / "ray")
    nodes = []
    try:
        head, address = start_ray_node(ray_cli, temp, "127.0.0.2", 1, env, logs / "head.log")
        nodes.append(head)
        node, _ = start_ray_node(
            ray_cli, temp, "127.0.0.3", 1, env, logs / "node.log", head_address=address
        )
        nodes.append(node)
        yield {
            **env,
            "RAY_ADDRESS": address,
            "CITEQA_CHROMA_URL": f"http://127.0.0.1:{port}",
            "CITEQA_RETRIEVAL__WARM_SENTENCES": "0",
        }
    finally:
        for proc in reversed(nodes):
            stop_ray_node(proc)
        stop(chroma)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int, list]:
    return _corpus(tmp_path_factory.mktemp("corpus") / "papers.jsonl")


@pytest.fixture(scope="module")
def reference(cluster: dict[str, str], corpus, embeddings) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    """One clean single-process ingest of the same input into its own collection."""
    url = cluster["CITEQA_CHROMA_URL"]
    settings = Settings(chroma_url=url, collection_prefix="clean")
    summary = IngestJob(open_store(settings), embeddings, settings, progress=False).run([corpus[0]])
    return summary.to_json(), _snapshot(url, "clean")


def _ingest_cmd(path: str) -> list[str]:
    return [
        str(VENV_BIN / "citeqa"), "ingest", path, "--engine", "ray", "--json", "--verbose",
        "--batch", "150", "--split-bytes", "65536", "--stall-timeout", "120",
    ]  # fmt: skip


def _run_with(
    cmd: list[str], env: dict[str, str], after_batches: int, action
) -> tuple[int, str, list[str]]:
    """Run ingestion; once `after_batches` batches are written, call `action(proc)`.
    Returns the exit code, stdout and the batch lines seen."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None and proc.stdout is not None
    batches: list[str] = []
    stderr_tail: list[str] = []
    for line in proc.stderr:
        stderr_tail = (stderr_tail + [line])[-40:]
        if line.startswith("batch "):
            batches.append(line.strip())
            if len(batches) == after_batches:
                action(proc)
    out = proc.stdout.read()
    code = proc.wait(300)
    if code not in (0, -signal.SIGKILL):
        pytest.fail(f"ingest exited {code}:\n{''.join(stderr_tail)}")
    return code, out, batches


def _check_summary(summary: dict, clean: dict, n_papers: int, bad: list) -> None:
    assert summary["papers_read"] == n_papers
    assert summary["skipped"] == len(bad) == clean["skipped"]
    assert [(e["line"], e["reason"].split()[0].lower()) for e in summary["errors"]] == [
        (line, reason.split()[0]) for line, reason in bad
    ]
    assert summary["errors"] == clean["errors"]  # the same lines and reasons as the local job


def test_killed_embedding_worker_ends_as_one_clean_run(cluster, corpus, reference) -> None:
    path, n_papers, bad = corpus
    clean_summary, clean = reference
    env = {**cluster, "CITEQA_COLLECTION_PREFIX": "killworker"}
    killed: list[int] = []

    def kill_actor(_proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + 30
        while not (pids := _embed_actor_pids()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pids, "no embedding actor process found"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        killed.extend(pids)

    code, out, batches = _run_with(_ingest_cmd(path), env, 1, kill_actor)
    assert killed and code == 0
    assert len(batches) == -(-n_papers // 150)  # it went on after the kill
    summary = json.loads(out)
    _check_summary(summary, clean_summary, n_papers, bad)
    assert summary["added"] == n_papers
    _assert_same_store(_snapshot(cluster["CITEQA_CHROMA_URL"], "killworker"), clean)
    # Run again: nothing changed, nothing written.
    again = subprocess.run(_ingest_cmd(path), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["unchanged"] == n_papers
    assert json.loads(again.stdout)["chunks_written"] == 0


def test_killed_driver_then_rerun_ends_as_one_clean_run(cluster, corpus, reference) -> None:
    path, n_papers, bad = corpus
    clean_summary, clean = reference
    env = {**cluster, "CITEQA_COLLECTION_PREFIX": "killdriver"}

    def kill_driver(proc: subprocess.Popen) -> None:
        time.sleep(0.5)  # into the next batch's writes
        proc.send_signal(signal.SIGKILL)

    code, _, batches = _run_with(_ingest_cmd(path), env, 3, kill_driver)
    assert code == -signal.SIGKILL and len(batches) == 3
    partial = _snapshot(cluster["CITEQA_CHROMA_URL"], "killdriver")
    assert 0 < len(partial) < len(clean)
    code, out, _ = _run_with(_ingest_cmd(path), env, 0, lambda proc: None)
    assert code == 0
    summary = json.loads(out)
    _check_summary(summary, clean_summary, n_papers, bad)
    assert summary["unchanged"] >= 3 * 150 and summary["added"] > 0
    _assert_same_store(_snapshot(cluster["CITEQA_CHROMA_URL"], "killdriver"), clean)


def test_engine_ray_needs_a_chroma_server(tmp_path: Path) -> None:
    _need_ray()
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"id": "a", "title": "T", "abstract": "Some text."}) + "\n")
    env = {**base_env(), "CITEQA_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [str(VENV_BIN / "citeqa"), "ingest", str(src), "--engine", "ray"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "CITEQA_CHROMA_URL" in done.stderr
    assert not (tmp_path / "data").exists()  # nothing was opened or written
