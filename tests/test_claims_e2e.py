"""End to end: `citeqa ingest` of a few SciFact abstracts, `citeqa verify`, and the
web page's "check a claim" mode in a headless Chromium against `citeqa serve`."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import VENV_BIN, browser_page, require_tool, served
from tests.test_api_e2e import ARTIFACTS
from tests.test_claims import CONTRADICTED, FIXTURE, OUT_OF_FIELD

pytestmark = pytest.mark.slow
CITEQA = str(VENV_BIN / "citeqa")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("claims-served")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env.update(
        CITEQA_DATA_DIR=str(tmp / "data"),
        HF_HUB_OFFLINE="1",
        CITEQA_RETRIEVAL__WARM_SENTENCES="0",
    )
    subprocess.run(
        [CITEQA, "ingest", str(FIXTURE), "--json"],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return env


@pytest.fixture(scope="module")
def server(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served(env, tmp_path_factory.mktemp("claims-log") / "serve.log") as url:
        yield url


def test_cli_verify_json_and_text(env: dict[str, str]) -> None:
    claim, paper = CONTRADICTED
    out = subprocess.run(
        [CITEQA, "verify", claim, "--json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    check = json.loads(out.stdout)
    found = {p["paper_id"]: p for p in check["papers"]}
    assert found[paper]["label"] == "contradicts" and found[paper]["citations"]
    text = subprocess.run(
        [CITEQA, "verify", OUT_OF_FIELD], env=env, capture_output=True, text=True, timeout=120
    )
    assert text.returncode == 0 and "does not cover" in text.stdout
    empty = subprocess.run(
        [CITEQA, "verify", "  "], env=env, capture_output=True, text=True, timeout=120
    )
    assert empty.returncode == 2 and "empty" in empty.stderr


def test_web_page_checks_a_claim(server: str) -> None:
    from playwright.sync_api import expect

    chromium = require_tool("chromium", "chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    claim, paper = CONTRADICTED
    with browser_page(chromium) as (page, errors):
        page.goto(server + "/")
        page.select_option("#mode", "claim")
        expect(page.locator("#send")).to_have_text("Check")
        page.fill("#q", claim)
        page.click("#send")
        turn = page.locator(".turn").last
        expect(turn.locator(".a")).to_have_attribute("data-state", "done", timeout=30_000)
        expect(turn.locator(".verdict")).to_contain_text("contradict")
        item = turn.locator("li.paper[data-label='contradicts']").first
        expect(item).to_be_visible()
        quote = item.locator("blockquote").first
        with page.expect_response(lambda r: "/v1/papers/" in r.url) as opened:
            quote.click()
        assert opened.value.status == 200 and opened.value.json()["paper_id"] == paper
        mark = page.locator("#p-abstract mark")
        expect(mark).to_have_text(quote.inner_text())
        page.screenshot(path=str(ARTIFACTS / "web-claim.png"))

        page.fill("#q", OUT_OF_FIELD)
        page.click("#send")
        last = page.locator(".turn").last
        expect(last.locator(".a")).to_have_attribute("data-state", "done", timeout=30_000)
        expect(last.locator(".badge.refused")).to_be_visible()
        assert last.locator("li.paper").count() == 0
    assert not errors, errors
