"""The MCP server driven by the SDK's own client (`mcp.Client`), against the real
server over both transports: `python -m api.cli mcp` over stdio, and `citeqa serve`
under uvicorn at /mcp with and without keys."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.helpers import ROOT, SAMPLE, VENV_BIN, base_env, start_api, stop

pytestmark = pytest.mark.slow

QUESTION = "How do randomized tree ensembles regulate the smoothness of their predictions?"
FOREST = "Why do Random Forests Work?"
UNCOVERED = "What is the best recipe for sourdough bread with a rye starter?"
READER, ADMIN = "reader-key-0123456789", "admin-key-0123456789"
TOOLS = {"search_papers", "ask", "get_paper", "list_papers", "export_citations", "verify_claim"}
WRITE_TOOLS = {"ingest_papers", "delete_paper"}
RIS = (
    "TY  - JOUR\nTI  - Soil Microbiome Shifts After Drought\nAU  - Ortiz, Ana\nPY  - 2021\n"
    "AB  - Drought reduced the diversity of the soil microbiome by a third, and recovery "
    "took two growing seasons.\nDO  - 10.5555/soil.2021.7\nER  - \n"
)


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = base_env(CITEQA_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1", **extra)
    # The children import this worktree's code, whatever the venv's editable install points at.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample corpus ingested once by the CLI; each server gets its own copy."""
    data = tmp_path_factory.mktemp("mcp") / "data"
    subprocess.run(
        [sys.executable, "-m", "api.cli", "ingest", str(SAMPLE), "--json"],
        env=_env(data),
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return data


def _copy(src: Path, tmp: Path) -> Path:
    dst = tmp / "data"
    shutil.copytree(src, dst)
    return dst


def _text(result) -> str:  # type: ignore[no-untyped-def]
    return " ".join(getattr(c, "text", "") for c in result.content)


async def _session(client, writes: bool) -> dict:  # type: ignore[no-untyped-def]
    """List and call every read tool the way an agent would; returns what it saw."""
    from mcp import MCPError

    seen: dict = {}
    tools = {t.name: t for t in (await client.list_tools()).tools}
    seen["tools"] = set(tools)
    assert TOOLS <= set(tools)
    assert (WRITE_TOOLS <= set(tools)) == writes
    assert tools["ask"].output_schema and "citations" in json.dumps(tools["ask"].output_schema)

    answer = await client.call_tool("ask", {"question": QUESTION})
    assert not answer.is_error, _text(answer)
    body = answer.structured_content
    assert not body["refused"] and body["citations"]
    c = body["citations"][0]
    assert set(c) >= {"n", "paper_id", "title", "url", "quote", "start", "end"}
    assert c["title"].startswith(FOREST)
    assert f"[{c['n']}]" in body["answer"]
    seen["answer"] = body

    paper = (await client.call_tool("get_paper", {"paper_id": c["paper_id"]})).structured_content
    assert paper["abstract"][c["start"] : c["end"]] == c["quote"]  # the offsets hold

    refused = (await client.call_tool("ask", {"question": UNCOVERED})).structured_content
    assert refused["refused"] and refused["citations"] == []

    hits = (await client.call_tool("search_papers", {"query": "random forests", "k": 3}))
    results = hits.structured_content["results"]
    assert len(results) == 3 and results[0]["title"].startswith(FOREST)

    page = (await client.call_tool("list_papers", {"limit": 5})).structured_content
    assert len(page["papers"]) == 5 and page["next_offset"] == 5

    cite = await client.call_tool(
        "export_citations", {"paper_ids": [c["paper_id"], "no-such-paper"], "format": "ris"}
    )
    out = cite.structured_content
    assert out["text"].startswith("TY  - ") and out["missing"] == ["no-such-paper"]

    resource = await client.read_resource(f"paper://{c['paper_id']}")
    assert json.loads(resource.contents[0].text)["paper_id"] == c["paper_id"]

    # Malformed calls: an MCP error or an error result, and the server carries on.
    for name, args in (
        ("ask", {}),  # a required argument missing
        ("search_papers", {"query": "x", "k": "many"}),  # the wrong type
        ("no_such_tool", {"x": 1}),
        ("get_paper", {"paper_id": "no-such-paper"}),
    ):
        try:
            bad = await client.call_tool(name, args)
        except MCPError as exc:
            assert str(exc)
        else:
            assert bad.is_error and _text(bad), (name, bad)
    try:
        await client.read_resource("paper://no-such-paper")
        raise AssertionError("a missing paper resource was read")
    except MCPError as exc:
        assert "no-such-paper" in str(exc) or "not found" in str(exc).lower()
    again = await client.call_tool("get_paper", {"paper_id": c["paper_id"]})
    assert not again.is_error
    return seen


def test_stdio_tools_listed_and_called(sample_dir: Path, tmp_path: Path) -> None:
    from mcp import Client, StdioServerParameters

    data = _copy(sample_dir, tmp_path)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "api.cli", "mcp"],
        env=_env(data),
        cwd=str(ROOT),
    )

    async def main() -> None:
        async with Client(params) as client:
            await _session(client, writes=False)

    anyio.run(main)


def test_stdio_writes_need_the_admin_key(sample_dir: Path, tmp_path: Path) -> None:
    from mcp import Client, StdioServerParameters

    data = _copy(sample_dir, tmp_path)
    no_key = subprocess.run(
        [sys.executable, "-m", "api.cli", "mcp", "--writes"],
        env=_env(data),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert no_key.returncode == 2 and "CITEQA_ADMIN_KEY" in no_key.stderr
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "api.cli", "mcp", "--writes"],
        env=_env(data, CITEQA_ADMIN_KEY=ADMIN),
        cwd=str(ROOT),
    )

    async def main() -> None:
        async with Client(params) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            assert WRITE_TOOLS <= tools
            done = await client.call_tool("ingest_papers", {"content": RIS, "filename": "x.ris"})
            assert not done.is_error, _text(done)
            assert done.structured_content["summary"]["added"] == 1
            got = await client.call_tool("get_paper", {"paper_id": "10.5555/soil.2021.7"})
            assert got.structured_content["title"] == "Soil Microbiome Shifts After Drought"
            gone = await client.call_tool("delete_paper", {"paper_id": "10.5555/soil.2021.7"})
            assert gone.structured_content["chunks"] >= 1

    anyio.run(main)


@pytest.fixture(scope="module")
def http_server(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("mcp-http")
    data = _copy(sample_dir, tmp)
    env = _env(data, CITEQA_API_KEYS=READER, CITEQA_ADMIN_KEY=ADMIN)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    proc, url = start_api(env, tmp / "serve.log")
    try:
        yield url
    finally:
        stop(proc)


def _client(url: str, key: str | None):  # type: ignore[no-untyped-def]
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0))
    return Client(streamable_http_client(f"{url}/mcp", http_client=http))


def test_http_tools_listed_and_called_with_a_key(http_server: str) -> None:
    async def main() -> None:
        async with _client(http_server, READER) as client:
            await _session(client, writes=True)

    anyio.run(main)


def test_http_without_a_key_is_refused_like_v1(http_server: str) -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "curl", "version": "0"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        r = httpx.post(f"{http_server}/mcp", json=init, headers={**accept, **headers})
        assert r.status_code == 401, r.text
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.post(
        f"{http_server}/mcp", json=init, headers={**accept, "Authorization": f"Bearer {READER}"}
    )
    assert r.status_code == 200 and r.json()["result"]["serverInfo"]["name"] == "citeqa"
    big = {**init, "params": {**init["params"], "pad": "x" * 300_000}}
    r = httpx.post(
        f"{http_server}/mcp", json=big, headers={**accept, "Authorization": f"Bearer {READER}"}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    async def main() -> bool:
        try:
            async with _client(http_server, None) as client:
                await client.list_tools()
        except Exception:  # the SDK's client reports the 401 as an error
            return False
        return True

    assert anyio.run(main) is False, "an MCP session opened without a key"


def test_http_write_tools_need_the_admin_key(http_server: str) -> None:
    async def main() -> None:
        async with _client(http_server, READER) as client:
            refused = await client.call_tool("ingest_papers", {"content": RIS, "filename": "x.ris"})
            assert refused.is_error and "may read but not write" in _text(refused)
            refused = await client.call_tool("delete_paper", {"paper_id": "anything"})
            assert refused.is_error
        async with _client(http_server, ADMIN) as client:
            done = await client.call_tool("ingest_papers", {"content": RIS, "filename": "x.ris"})
            assert not done.is_error, _text(done)
            assert done.structured_content["summary"]["added"] == 1
            gone = await client.call_tool("delete_paper", {"paper_id": "10.5555/soil.2021.7"})
            assert not gone.is_error and gone.structured_content["chunks"] >= 1

    anyio.run(main)


def test_cli_ask_cite_format_prints_the_cited_papers(sample_dir: Path, tmp_path: Path) -> None:
    """`citeqa ask --cite-format ris`: the cited papers on stdout, ready for a
    reference manager; the answer on stderr."""
    data = _copy(sample_dir, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "ask", QUESTION, "--cite-format", "ris"],
        env=_env(data),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("TY  - ") and f"TI  - {FOREST}" in done.stdout
    assert "[1]" in done.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "api.cli", "ask", QUESTION, "--cite-format", "docx"],
        env=_env(data),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown --cite-format 'docx'" in bad.stderr
