"""A test past its time limit fails alone, and the run goes on to its summary.

pytest-timeout's signal method (pyproject.toml) fails a test that passes its limit in
the test's own thread, with its stack. What a signal cannot break (a teardown waiting
again on the deadlock that timed the test out, C code that never returns to the
interpreter) meets this module's backstop `CITEQA_TEST_BACKSTOP_GRACE` seconds later
(60): every thread's stack goes to test-artifacts/timeouts/ and the process exits.
`make test` runs the suite in one pytest-xdist worker, so that exit costs one failed
test, reported with those stacks, and a new worker takes the rest of the run.

tests/conftest.py imports the hooks; tests/test_timeouts.py runs them on tests that
sleep and hang.
"""

from __future__ import annotations

import faulthandler
import os
import re
import shutil
import sys
import threading
from pathlib import Path

import pytest

TIMEOUT_DIR = (
    Path(os.environ.get("CITEQA_TEST_ARTIFACTS") or Path(__file__).resolve().parent.parent
         / "test-artifacts")
    / "timeouts"
)


def _grace() -> float:
    return float(os.environ.get("CITEQA_TEST_BACKSTOP_GRACE", "60"))


def _stack_file(nodeid: str) -> Path:
    return TIMEOUT_DIR / (re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)[-150:] + ".txt")


def _item_timeout(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 0)


def _last_resort(nodeid: str, after: float) -> None:
    TIMEOUT_DIR.mkdir(parents=True, exist_ok=True)
    path = _stack_file(nodeid)
    with open(path, "w") as f:
        f.write(
            f"{nodeid} was still running {after:.0f} s after it started, past its time "
            f"limit and the {_grace():.0f} s grace after it; every thread's stack:\n"
        )
        f.flush()
        faulthandler.dump_traceback(file=f, all_threads=True)
    sys.stderr.write(f"\n{nodeid}: stuck past its time limit; stacks in {path}\n")
    sys.stderr.flush()
    os._exit(3)


def pytest_sessionstart(session: pytest.Session) -> None:
    # The controller (not an xdist worker) clears the last run's stacks.
    if not hasattr(session.config, "workerinput"):
        shutil.rmtree(TIMEOUT_DIR, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):  # type: ignore[no-untyped-def]
    limit = _item_timeout(item)
    timer = None
    if limit > 0:
        after = limit + _grace()
        timer = threading.Timer(after, _last_resort, (item.nodeid, after))
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched) -> None:  # type: ignore[no-untyped-def]
    """pytest-xdist: a worker that died in a test reports that test's stacks."""
    path = _stack_file(crashitem)
    if path.exists():
        report.longrepr = f"{report.longrepr}\n{path.read_text()}"
