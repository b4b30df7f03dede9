"""End to end: answers whose clients went away stop burning CPU (`citeqa serve` under
uvicorn with llama.cpp's SmolLM2 in-process, requests cut off by the client)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import SAMPLE, VENV_BIN, base_env, start_api, stop

# A llama.cpp model served and cut off again and again: make test-heavy (CI's second step).
pytestmark = [pytest.mark.slow, pytest.mark.heavy]

QUESTION = "Why do random forests work so well?"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    pytest.importorskip("llama_cpp", reason="the local extra (llama-cpp-python) is needed")
    tmp = tmp_path_factory.mktemp("cancel")
    env = base_env(CITEQA_DATA_DIR=str(tmp / "data"), CITEQA_LLM_ALLOWED="extractive,llamacpp")
    subprocess.run(
        [str(VENV_BIN / "citeqa"), "ingest", str(SAMPLE)], env=env, check=True, capture_output=True
    )
    proc, url = start_api(env, tmp / "serve.log")
    try:
        yield url, proc.pid
    finally:
        stop(proc)


def test_cut_off_answers_stop_their_model_work(server: tuple[str, int]) -> None:
    url, pid = server
    body = {"question": QUESTION, "llm": "llamacpp"}
    # Load the model once (not what is measured), then cut ten answers off at 0.5 s.
    first = httpx.post(f"{url}/v1/chat", json=body, timeout=120)
    assert first.status_code == 200
    for _ in range(10):
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{url}/v1/chat", json=body, timeout=0.5)
    time.sleep(1.5)  # the server notices the clients are gone (it polls every 0.25 s)
    before = cpu_seconds(pid)
    time.sleep(3.0)
    burnt = cpu_seconds(pid) - before
    # Abandoned generations kept one or two cores busy (3.9-5.7 s of CPU in 3 s).
    assert burnt < 2.0, f"the server used {burnt:.2f}s of CPU with no request in flight"
    t0 = time.monotonic()
    r = httpx.post(f"{url}/v1/chat", json={"question": QUESTION}, timeout=60)
    latency = time.monotonic() - t0
    answer = r.json()
    assert r.status_code == 200 and not answer["degraded"] and answer["citations"]
    print(f"CPU in 3 s after ten cut-off answers: {burnt:.2f}s; next answer in {latency:.2f}s")
