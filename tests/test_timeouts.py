"""A test past its time limit fails alone, with its stack, and the run reaches its
summary: the suite's own timeout settings and hooks (tests/timeouts.py) run on a
small suite of a test that sleeps, a teardown that ignores the timeout, and a test
after each, in one pytest-xdist worker as `make test` runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SUITE = '''
import time
import pytest


def test_sleeps_past_its_limit():
    time.sleep(60)


def test_after_the_sleeper():
    assert True


@pytest.fixture
def deaf_teardown():
    yield
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # swallows the timeout, as a deadlock would
        try:
            time.sleep(60)
        except BaseException:
            pass


def test_teardown_ignores_the_timeout(deaf_teardown):
    time.sleep(60)


def test_after_the_deaf_teardown():
    assert True
'''


@pytest.mark.slow
def test_a_test_past_its_limit_fails_alone_and_the_run_goes_on(tmp_path: Path) -> None:
    pytest.importorskip("xdist", reason="pytest-xdist is in the dev extra (make test)")
    (tmp_path / "conftest.py").write_text("from tests.timeouts import *  # noqa: F403\n")
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(SUITE))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "CITEQA_TEST_BACKSTOP_GRACE": "3",
        "CITEQA_TEST_ARTIFACTS": str(tmp_path / "artifacts"),
    }
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(tmp_path), "-o", "timeout=2", "-n", "1", "-v", "-p", "no:cacheprovider",
         str(tmp_path / "test_suite.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    out = run.stdout + run.stderr
    assert time.monotonic() - start < 100, out
    # Both tests after a stuck one ran and passed; the run ended on its summary line
    # (the deaf teardown's test fails twice: by the signal, then by its worker's end).
    assert re.search(r"PASSED test_suite.py::test_after_the_sleeper", out), out
    assert re.search(r"PASSED test_suite.py::test_after_the_deaf_teardown", out), out
    assert re.search(r"=+ [23] failed, 2 passed in [\d.]+s", out), out
    # The sleeper failed by the signal, with its own stack (the line it slept on).
    assert "Timeout (>2.0s)" in out and "time.sleep(60)" in out, out
    # The deaf teardown met the backstop: its worker died, the report holds the stacks.
    assert "crashed while running" in out and "test_teardown_ignores_the_timeout" in out, out
    assert "every thread's stack" in out, out


def test_the_suite_times_tests_out_in_their_own_thread() -> None:
    import tomllib

    ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    # 'thread' would end the whole run at the first test past its limit.
    assert ini["timeout_method"] == "signal"
    assert 0 < ini["timeout"] <= 600
