"""End to end: `citeqa serve` under a real uvicorn on a loopback port, reached by
the official openai SDK, LangChain's ChatOpenAI, plain HTTP streaming, and a
headless Chromium driving the web page."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, SAMPLE, VENV_BIN, browser_page, require_tool, served

pytestmark = pytest.mark.slow

QUESTION = "How do randomized tree ensembles regulate the smoothness of their predictions?"
FOREST = "Why do Random Forests Work?"
HOSTILE_ID = "2402.99999"
HOSTILE = {
    "id": HOSTILE_ID,
    "title": "Gradient Checkpointing for <script>alert(1)</script> Memory-Bound Training",
    "abstract": "We reduce activation memory of deep networks by recomputing activations "
    "during the backward pass. <script>window.__pwned = true</script> Gradient "
    "checkpointing cuts training memory of a 48-layer transformer by 70 percent "
    'at a 30 percent compute cost. <img src=x onerror="window.__pwned=true">',
    "update_date": "2024-02-01",
}
# An old-style arXiv id: the slash must survive the page's encodeURIComponent and
# the server's path routing, or the citation panel cannot load the abstract.
SLASH_ID = "hep-th/9901001"
SLASH = {
    "id": SLASH_ID,
    "title": "Zeta-Regularized Casimir Energy Stabilizes Compact Extra Dimensions",
    "abstract": "We compute the Casimir energy of fields on compact extra dimensions with "
    "zeta function regularization. The regularized Casimir energy generates a potential "
    "for the radion that stabilizes the size of the extra dimensions without fine tuning. "
    "For six extra dimensions the stabilized radius is twelve Planck lengths.",
    "update_date": "1999-01-04",
}
SLASH_QUESTION = (
    "How does zeta function regularized Casimir energy stabilize the radius of compact "
    "extra dimensions?"
)
# Refused by the gate, but only just: no word of the abstract's for what NoiSER does.
NEAR_QUESTION = "Can a network learn to brighten dark photos without seeing any real images?"
NEAR_TITLE = "NoiSER"
ARTIFACTS = Path(os.environ.get("CITEQA_TEST_ARTIFACTS", ROOT / "test-artifacts"))


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium (Playwright's own download cannot reach the network here).
    Session-scoped, so a missing browser skips before the module's server starts."""
    return require_tool("chromium", "chromium")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Ingest the sample plus a hostile abstract through the CLI, then serve it."""
    tmp = tmp_path_factory.mktemp("served")
    hostile = tmp / "hostile.jsonl"
    hostile.write_text(json.dumps(HOSTILE) + "\n" + json.dumps(SLASH) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env.update(CITEQA_DATA_DIR=str(tmp / "data"), HF_HUB_OFFLINE="1")
    citeqa = str(VENV_BIN / "citeqa")
    subprocess.run(
        [citeqa, "ingest", str(SAMPLE), str(hostile), "--json"],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    with served(env, tmp / "serve.log") as url:
        yield url


def check_completion_text(text: str, citations: list[dict]) -> None:
    body, _, refs = text.partition("\n\nReferences:\n")
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", body)}
    assert markers and markers == {c["n"] for c in citations}
    for c in citations:
        assert f"[{c['n']}] {c['title']}" in refs
        assert c["quote"]
    assert citations[0]["title"].startswith(FOREST)


def test_openai_sdk_non_streaming(server: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{server}/v1", api_key="unused", timeout=60, max_retries=0)
    assert "citeqa" in {m.id for m in client.models.list()}
    r = client.chat.completions.create(
        model="citeqa", messages=[{"role": "user", "content": QUESTION}]
    )
    assert r.choices[0].finish_reason == "stop"
    extra = r.model_extra or {}
    check_completion_text(r.choices[0].message.content or "", extra["citations"])


def test_openai_sdk_streaming(server: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{server}/v1", api_key="unused", timeout=60, max_retries=0)
    stream = client.chat.completions.create(
        model="citeqa",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, citations, usage, finish = [], None, None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
        if (chunk.model_extra or {}).get("citations") is not None:
            citations = chunk.model_extra["citations"]
    assert finish == "stop" and usage is not None and usage.completion_tokens > 0
    assert len([p for p in pieces if p]) > 1  # really streamed in pieces
    check_completion_text("".join(pieces), citations or [])


def test_openai_sdk_sees_openai_errors(server: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"


def test_langchain_chat_openai(server: str) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="citeqa", base_url=f"{server}/v1", api_key="unused", timeout=60)  # type: ignore[arg-type]
    reply = llm.invoke(QUESTION)
    assert FOREST in str(reply.content) and re.search(r"\[1\]", str(reply.content))
    streamed = "".join(str(c.content) for c in llm.stream(QUESTION))
    assert streamed == reply.content  # same verified answer, streamed


def test_chat_sse_over_the_wire(server: str) -> None:
    names = []
    with httpx.stream(
        "POST", f"{server}/v1/chat", json={"question": QUESTION, "stream": True}, timeout=60
    ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event:"):
                names.append(line.split(":", 1)[1].strip())
    assert names[0] == "token" and names[-2:] == ["citations", "done"]


def test_hostile_abstract_is_data(server: str) -> None:
    r = httpx.post(
        f"{server}/v1/chat",
        json={
            "question": "How much memory does recomputing activations in the backward "
            "pass save for a deep transformer?"
        },
        timeout=60,
    )
    body = r.json()
    assert not body["refused"] and body["citations"][0]["paper_id"] == HOSTILE_ID
    paper = httpx.get(f"{server}/v1/papers/{HOSTILE_ID}").json()
    assert "<script>" in paper["abstract"]  # stored verbatim, as data


def test_web_page_streams_an_answer_and_highlights_the_cited_passage(
    chromium: str, server: str
) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page(chromium) as (page, errors):
        page.goto(server + "/")
        page.fill("#q", QUESTION)
        page.click("#send")
        answer = page.locator(".turn").last.locator(".a")
        # The draft streams in, then the verified answer replaces it.
        expect(answer).to_have_attribute("data-state", "done", timeout=30_000)
        cite = answer.locator("button.cite").first
        expect(cite).to_have_text("[1]")
        with page.expect_response(lambda r: "/v1/papers/" in r.url) as opened:
            cite.click()
        assert opened.value.status == 200, opened.value.url  # the whole abstract came
        panel = page.locator("#panel")
        expect(panel).to_be_visible()
        expect(page.locator("#p-title")).to_contain_text(FOREST)
        mark = page.locator("#p-abstract mark")
        expect(mark).to_be_visible()
        quote = mark.inner_text()
        whole = opened.value.json()["abstract"]
        expect(page.locator("#p-abstract")).to_have_text(whole)  # not the quote alone
        assert len(quote) > 40 and quote in whole and len(whole) > len(quote)
        page.screenshot(path=str(ARTIFACTS / "web-answer.png"))

        # A follow-up keeps the conversation; then the hostile paper shows as text.
        page.fill(
            "#q",
            "How much memory does recomputing activations in the backward pass "
            "save for a deep transformer?",
        )
        page.click("#send")
        second = page.locator(".turn").nth(1).locator(".a")
        expect(second).to_have_attribute("data-state", "done", timeout=30_000)
        second.locator("button.cite").first.click()
        expect(page.locator("#p-title")).to_contain_text("<script>alert(1)</script>")
        expect(page.locator("#p-abstract")).to_contain_text(
            "<script>window.__pwned = true</script>"
        )
        assert page.evaluate("window.__pwned === undefined")
        assert page.locator("#panel script, #panel img").count() == 0
        page.screenshot(path=str(ARTIFACTS / "web-hostile.png"))

        # A new conversation citing a paper whose id holds a slash: its citation opens
        # in the panel with the whole abstract, the cited passage marked.
        page.click("#settings summary")
        page.click("#reset")
        expect(page.locator(".turn")).to_have_count(0)
        page.fill("#q", SLASH_QUESTION)
        page.click("#send")
        third = page.locator(".turn").last.locator(".a")
        expect(third).to_have_attribute("data-state", "done", timeout=30_000)
        ref = page.locator(".turn").last.locator("ol.refs li", has_text=SLASH["title"])
        with page.expect_response(lambda r: "/v1/papers/" in r.url) as opened:
            ref.click()
        assert opened.value.status == 200, opened.value.url
        assert "hep-th%2F9901001" in opened.value.url  # what encodeURIComponent sends
        expect(page.locator("#p-id")).to_have_text(SLASH_ID)
        expect(page.locator("#p-title")).to_contain_text(SLASH["title"])
        expect(page.locator("#p-abstract")).to_have_text(SLASH["abstract"])
        mark = page.locator("#p-abstract mark")
        expect(mark).to_be_visible()
        assert mark.inner_text() in SLASH["abstract"]
        assert len(mark.inner_text()) < len(SLASH["abstract"])
        page.screenshot(path=str(ARTIFACTS / "web-slash-id.png"))

        # Refused, but near the corpus (asked in other words than the abstract's): the
        # turn is marked "not covered" and lists the nearest papers; one opens whole.
        page.fill("#q", NEAR_QUESTION)
        page.click("#send")
        fourth = page.locator(".turn").last
        expect(fourth.locator(".a")).to_have_attribute("data-state", "done", timeout=30_000)
        expect(fourth.locator(".badge.refused")).to_be_visible()
        expect(fourth.locator("button.cite")).to_have_count(0)
        nearest = fourth.locator("ol.refs.nearest li", has_text=NEAR_TITLE)
        with page.expect_response(lambda r: "/v1/papers/" in r.url) as opened:
            nearest.click()
        assert opened.value.status == 200, opened.value.url
        expect(page.locator("#p-title")).to_contain_text(NEAR_TITLE)
        expect(page.locator("#p-abstract")).to_have_text(opened.value.json()["abstract"])
        page.screenshot(path=str(ARTIFACTS / "web-near-refusal.png"))
    assert errors == []


def test_web_page_cite_menu_downloads_the_cited_paper(chromium: str, server: str) -> None:
    """Next to each citation, a cite menu: BibTeX, RIS or CSL-JSON, downloaded as a
    file a reference manager imports, holding the cited paper under its id."""
    from playwright.sync_api import expect

    with browser_page(chromium, accept_downloads=True) as (page, errors):
        page.goto(server + "/")
        page.fill("#q", QUESTION)
        page.click("#send")
        turn = page.locator(".turn").last
        expect(turn.locator(".a")).to_have_attribute("data-state", "done", timeout=30_000)
        first = turn.locator("ol.refs li").first
        expect(first).to_contain_text(FOREST)
        files = {}
        for fmt in ("bibtex", "ris", "csljson"):
            first.locator(".cite-menu summary").click()  # the menu closes after a choice
            expect(page.locator("#panel")).to_be_hidden()  # the menu is not the panel's click
            with page.expect_download() as info:
                first.locator(f".cite-format[data-format={fmt}]").click()
            files[fmt] = Path(info.value.path()).read_text()
            assert info.value.suggested_filename.endswith((".bib", ".ris", ".json"))
        paper_id = page.evaluate(
            "async () => (await (await fetch('/v1/search?q=' + encodeURIComponent("
            f"{json.dumps(FOREST)}) + '&k=1')).json()).results[0].paper_id"
        )
        assert files["bibtex"].startswith("@") and f"{{{paper_id}," in files["bibtex"]
        assert files["ris"].startswith("TY  - ") and f"ID  - {paper_id}" in files["ris"]
        assert json.loads(files["csljson"])[0]["id"] == paper_id
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-cite-menu.png"))
    assert errors == []
