"""The console script and a real uvicorn, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers import SAMPLE, VENV_BIN, free_port, stop, wait_http

pytestmark = pytest.mark.slow
CITEQA = str(VENV_BIN / "citeqa")


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env["CITEQA_DATA_DIR"] = str(data_dir)
    return env


def _citeqa(args: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([CITEQA, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_missing_file_exits_2_with_one_line(tmp_path: Path) -> None:
    r = _citeqa(["ingest", str(tmp_path / "nope.jsonl")], _env(tmp_path), 60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"citeqa: {tmp_path / 'nope.jsonl'}: no such file"]
    assert not (tmp_path / "chroma").exists()  # failed before touching the store


def test_ingest_search_and_serve(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    r = _citeqa(["ingest", str(SAMPLE), "--json"], env, 300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert {
        "papers_read",
        "added",
        "updated",
        "unchanged",
        "skipped",
        "chunks_written",
        "seconds",
    } <= summary.keys()
    assert summary["added"] == 61 and summary["skipped"] == 0 and summary["chunks_written"] > 61

    r = _citeqa(["ingest", str(SAMPLE), "--if-empty"], env, 120)
    assert r.returncode == 0 and "already holds 61 papers" in r.stderr
    # A seed killed half-way (its mark left behind) is taken up by the next one.
    (tmp_path / "data" / ".seeding").touch()
    r = _citeqa(["ingest", str(SAMPLE), "--if-empty", "--json"], env, 300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["unchanged"] == 61
    assert not (tmp_path / "data" / ".seeding").exists()

    r = _citeqa(["search", "learning to rank with biased clicks", "--k", "2", "--json"], env, 300)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    assert len(results) == 2
    assert set(results[0]) == {"paper_id", "title", "score", "snippet"}
    assert results[0]["title"] == "Unbiased Learning to Rank with Unbiased Propensity Estimation"

    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [CITEQA, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", timeout=120, proc=proc)
        ready = httpx.get(f"{base}/readyz", timeout=10).json()
        assert ready["store"]["papers"] == 61
        r2 = httpx.get(
            f"{base}/v1/search",
            params={"q": "learning to rank with biased clicks", "k": 2},
            timeout=30,
        )
        assert r2.status_code == 200
        assert [x["paper_id"] for x in r2.json()["results"]] == [x["paper_id"] for x in results]
    finally:
        stop(proc)
        log.close()
