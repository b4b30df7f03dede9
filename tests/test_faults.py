"""Faults with real processes on loopback: the store going away and coming back,
the LLM down or too slow, and coming back."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ingest.job import IngestJob
from rag.index.store import open_store
from rag.settings import Settings
from tests.helpers import (
    SAMPLE,
    VENV_BIN,
    base_env,
    free_port,
    start_api,
    start_chroma,
    start_llama,
    stop,
)

pytestmark = pytest.mark.slow

QUESTION = "How do randomized tree ensembles regulate the smoothness of their predictions?"


# Several real processes for a minute or more: make test-heavy (CI's second step).
@pytest.mark.heavy
def test_chroma_server_outage_is_503_and_the_api_recovers_by_itself(
    tmp_path: Path, embeddings
) -> None:
    db, port = tmp_path / "chroma", free_port()
    chroma = start_chroma(db, port)
    url = f"http://127.0.0.1:{port}"
    settings = Settings(data_dir=tmp_path / "unused", chroma_url=url, request_timeout=5)
    IngestJob(open_store(settings), embeddings, settings, progress=False).run([str(SAMPLE)])
    api, api_url = start_api(
        base_env(CITEQA_CHROMA_URL=url, CITEQA_REQUEST_TIMEOUT="5"), tmp_path / "api.log"
    )
    try:
        assert (
            httpx.post(f"{api_url}/v1/chat", json={"question": QUESTION}, timeout=60).status_code
            == 200
        )
        stop(chroma)
        t0 = time.monotonic()
        ready = httpx.get(f"{api_url}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["store"]["ok"] is False
        for method, path, kwargs in [
            ("POST", "/v1/chat", {"json": {"question": QUESTION}}),
            ("POST", "/v1/chat", {"json": {"question": QUESTION, "stream": True}}),
            ("GET", "/v1/search", {"params": {"q": "random forests"}}),
            ("GET", "/v1/papers", {}),
        ]:
            r = httpx.request(method, api_url + path, timeout=30, **kwargs)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.json()["error"]["code"] == "store_unavailable"
        assert time.monotonic() - t0 < 30  # answered promptly, not after long hangs

        chroma = start_chroma(db, port)  # the same server comes back
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = httpx.post(f"{api_url}/v1/chat", json={"question": QUESTION}, timeout=30)
            if r.status_code == 200:
                break
            time.sleep(0.5)
        assert r.status_code == 200 and r.json()["citations"]
        assert httpx.get(f"{api_url}/readyz", timeout=30).json()["status"] == "ready"
    finally:
        stop(api)
        stop(chroma)
    assert "Traceback" not in (tmp_path / "api.log").read_text()


class StallingServer:
    """Accepts connections and never answers: an LLM slower than any timeout."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.fixture
def served_store(tmp_path: Path, embeddings) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    IngestJob(open_store(settings), embeddings, settings, progress=False).run([str(SAMPLE)])
    yield data


def llm_env(store: Path, base_url: str, timeout: float) -> dict[str, str]:
    return base_env(
        CITEQA_DATA_DIR=str(store),
        CITEQA_LLM="openai",
        CITEQA_LLM_MODEL="smollm2",
        CITEQA_LLM_TIMEOUT=str(timeout),
        OPENAI_API_KEY="unused",
        OPENAI_BASE_URL=base_url,
    )


def assert_fell_back(url: str, limit: float) -> None:
    t0 = time.monotonic()
    body = httpx.post(f"{url}/v1/chat", json={"question": QUESTION}, timeout=120).json()
    took = time.monotonic() - t0
    assert body["degraded"] and body["generator"] == "extractive", body
    assert body["degraded_reason"] and body["citations"] and not body["refused"]
    assert took < limit, took
    ready = httpx.get(f"{url}/readyz", timeout=30).json()
    assert ready["status"] == "degraded" and ready["llm"]["ok"] is False


def test_llm_slower_than_the_timeout_falls_back_in_time(tmp_path: Path, served_store: Path) -> None:
    stall = StallingServer()
    timeout = 3.0
    api, url = start_api(
        llm_env(served_store, f"http://127.0.0.1:{stall.port}/v1", timeout), tmp_path / "api.log"
    )
    try:
        # Bounded by the LLM timeout (3 s), not by the stall (forever) nor by the
        # request timeout (30 s): the margin leaves room for a busy machine.
        assert_fell_back(url, timeout + 15)
    finally:
        stop(api)
        stall.close()


def test_llm_down_then_back_resumes_generative_answers(tmp_path: Path, served_store: Path) -> None:
    port = free_port()
    api, url = start_api(
        llm_env(served_store, f"http://127.0.0.1:{port}/v1", 90.0), tmp_path / "api.log"
    )
    llama = None
    try:
        # Refused connections fail fast: well under the 90 s LLM timeout and the 30 s
        # request timeout, with room for a busy machine.
        assert_fell_back(url, 15.0)
        llama = start_llama(port, tmp_path / "llama.log")
        body = httpx.post(f"{url}/v1/chat", json={"question": QUESTION}, timeout=120).json()
        # The same API process reaches the model now. Whatever this tiny model wrote,
        # only verified citations are left; if none of its claims held up, the
        # extractive answer replaces it with that reason, not a connection error.
        reason = body["degraded_reason"] or ""
        assert body["generator"] == "openai" or "no claim the sources support" in reason, body
        assert httpx.get(f"{url}/readyz", timeout=30).json()["status"] == "ready"
    finally:
        stop(api)
        if llama is not None:
            stop(llama)


def _revision(path: Path, rev: str, n: int, sentences: int) -> None:
    """Papers whose title and every sentence carry the revision, so a mix of two
    versions of one paper shows in any answer that cites it."""
    topics = ["sparse attention", "contrastive pretraining", "graph rewiring", "token pruning"]
    with path.open("w") as fh:
        for i in range(n):
            body = " ".join(
                f"Quillfeather revision {rev} finding {j} shows that {topics[(i + j) % 4]} "
                f"changes calibration error by {i + j} points in setting {j}."
                for j in range(sentences)
            )
            fh.write(
                json.dumps(
                    {
                        "id": f"2405.{i:05d}",
                        "title": f"Quillfeather study {i} revision {rev}",
                        "abstract": body,
                    }
                )
                + "\n"
            )


def _revisions_in(text: str) -> set[str]:
    return set(re.findall(r"revision ([AB])\b", text))


# Several real processes for a minute or more: make test-heavy (CI's second step).
@pytest.mark.heavy
def test_ingestion_while_serving_shows_only_whole_papers(tmp_path: Path) -> None:
    """Queries run while another process ingests (adds, then rewrites shorter) papers
    into the same `chroma run` server: every request succeeds, and no answer or
    search hit ever mixes two versions of a paper or shows a part-written one."""
    port = free_port()
    chroma = start_chroma(tmp_path / "chroma", port)
    url = f"http://127.0.0.1:{port}"
    env = base_env(CITEQA_CHROMA_URL=url, HF_HUB_OFFLINE="1")
    citeqa = str(VENV_BIN / "citeqa")
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _revision(first, "A", 60, 14)  # about 4 chunks each
    _revision(second, "B", 60, 4)  # 1-2 chunks: the update leaves stale chunks to remove
    subprocess.run(
        [citeqa, "ingest", str(SAMPLE), "--json"], env=env, check=True, capture_output=True
    )
    api, api_url = start_api(
        {**env, "CITEQA_RETRIEVAL__LEXICAL_REFRESH_SECONDS": "0.2", "CITEQA_API__RATE_LIMIT": ""},
        tmp_path / "api.log",
    )
    problems: list[str] = []
    seen = {"requests": 0, "quill": 0}
    stop_flag = threading.Event()

    def check(paper_id: str, title: str, text: str) -> None:
        if not paper_id.startswith("2405."):
            return
        seen["quill"] += 1
        revs = _revisions_in(title) | _revisions_in(text)
        if len(revs) != 1:
            problems.append(f"{paper_id}: versions {sorted(revs)} in {title!r} / {text[:80]!r}")

    def hammer() -> None:
        with httpx.Client(base_url=api_url, timeout=60) as client:
            i = 0
            while not stop_flag.is_set():
                q = ["quillfeather calibration sparse attention", "quillfeather token pruning"][
                    i % 2
                ]
                i += 1
                s = client.get("/v1/search", params={"q": q, "k": 8})
                c = client.post("/v1/chat", json={"question": f"What does {q} change?"})
                seen["requests"] += 2
                for r in (s, c):
                    if r.status_code != 200:
                        problems.append(f"{r.request.url.path}: {r.status_code} {r.text[:200]}")
                if s.status_code == 200:
                    for hit in s.json()["results"]:
                        check(hit["paper_id"], hit["title"], hit["snippet"])
                if c.status_code == 200:
                    for cit in c.json()["citations"]:
                        check(cit["paper_id"], cit["title"], cit["quote"])

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for path in (first, second):
            done = subprocess.run(
                [citeqa, "ingest", str(path), "--batch", "5", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, done.stderr
            time.sleep(1.0)  # let the readers see the finished state too
    finally:
        stop_flag.set()
        thread.join(120)
        stop(api)
        stop(chroma)
    assert not problems, problems[:5]
    assert seen["requests"] >= 20 and seen["quill"] > 0, seen
    assert "Traceback" not in (tmp_path / "api.log").read_text()
