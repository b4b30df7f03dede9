"""The suite on a fresh machine: tests that need a system tool (Debian's chromium,
docker-compose) skip with a one-line reason naming the package when it is missing,
and fail instead when CI=true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, VENV_BIN, in_ci, require_tool

NEEDS_TOOLS = [
    "tests/test_api_e2e.py::test_web_page_streams_an_answer_and_highlights_the_cited_passage",
    "tests/test_deploy.py::test_compose_file_is_valid_and_wires_the_services",
    "tests/test_deploy.py::test_compose_reads_secrets_from_the_env_file",
]


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("", False)])
def test_ci_is_read_from_the_environment(monkeypatch, value: str, expected: bool) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_a_missing_tool_skips_outside_ci_and_fails_in_ci(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_tool("chromium", "chromium")
    assert str(skipped.value) == ("Debian's chromium is not installed: apt-get install chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install docker-compose"):
        require_tool("docker-compose", "docker-compose")
    tool = tmp_path / "docker-compose"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert require_tool("docker-compose", "docker-compose") == str(tool)


def _run_without_tools(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The tool-needing tests in a child pytest whose PATH holds only the venv."""
    child = {k: v for k, v in os.environ.items() if k != "CI"}
    child.update(PATH=str(VENV_BIN), **env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *NEEDS_TOOLS,
            "-q",
            "-rsfE",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "inner"),
        ],
        cwd=ROOT,
        env=child,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.slow
def test_make_test_on_a_machine_without_chromium_or_docker_compose(tmp_path: Path) -> None:
    run = _run_without_tools(tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert re.search(r"\b3 skipped\b", out), out
    assert "Debian's chromium is not installed: apt-get install chromium" in out
    assert "Debian's docker-compose is not installed: apt-get install docker-compose" in out

    ci = _run_without_tools(tmp_path, CI="true")
    out = ci.stdout + ci.stderr
    assert ci.returncode == 1, out
    assert "skipped" not in out and "apt-get install chromium" in out, out
    assert re.search(r"\b2 failed\b", out) and re.search(r"\b1 error\b", out), out
