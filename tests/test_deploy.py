"""The deployment topology: docker-compose validated by Debian's docker-compose,
and the same services run without Docker: `chroma run`, an ingest job and the
API as separate processes sharing nothing but the Chroma server."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import (
    ROOT,
    SAMPLE,
    VENV_BIN,
    base_env,
    free_port,
    require_tool,
    start_api,
    start_chroma,
    stop,
)

pytestmark = pytest.mark.slow


def compose_config(env: dict[str, str] | None = None) -> dict:
    exe = require_tool("docker-compose", "docker-compose")
    out = subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), "--profile", "llm", "config"],
        cwd=ROOT,
        env={**base_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_compose_file_is_valid_and_wires_the_services() -> None:
    cfg = compose_config()
    services = cfg["services"]
    assert set(services) == {"chroma", "ingest", "api", "llm"}
    assert services["chroma"]["image"].startswith("chromadb/chroma")
    assert any(
        str(v).endswith(":/data") or "chroma-data" in str(v) for v in services["chroma"]["volumes"]
    )
    assert "chroma-data" in cfg["volumes"]
    for name in ("ingest", "api"):
        assert services[name]["environment"]["CITEQA_CHROMA_URL"] == "http://chroma:8000"
        assert services[name]["depends_on"]["chroma"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["ingest"]["condition"] == "service_completed_successfully"
    for name in ("chroma", "api", "llm"):
        assert services[name]["healthcheck"]["test"]
    assert services["llm"]["profiles"] == ["llm"]
    # The API keeps its BM25 index on a volume (a restart opens it, no rebuild), at
    # the data directory the image sets, and bounds a search's wait for Chroma.
    assert "api-index" in cfg["volumes"]
    assert "api-index:/var/lib/citeqa:rw" in services["api"]["volumes"]
    assert "CITEQA_DATA_DIR=/var/lib/citeqa" in (ROOT / "Dockerfile").read_text()
    from rag.settings import RetrievalSettings

    deadline = services["api"]["environment"]["CITEQA_RETRIEVAL__SEARCH_DENSE_TIMEOUT_MS"]
    assert RetrievalSettings(search_dense_timeout_ms=deadline).search_dense_timeout_ms == 50
    assert "build" in services["api"] and (ROOT / "Dockerfile").is_file()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu" in dockerfile and "torch==2.13.0" in dockerfile


def test_compose_reads_secrets_from_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "secrets.env"
    env_file.write_text("CITEQA_ADMIN_KEY=s3cret\nOPENAI_API_KEY=sk-test\n")
    cfg = compose_config({"CITEQA_ENV_FILE": str(env_file)})
    env = cfg["services"]["api"]["environment"]
    assert env["CITEQA_ADMIN_KEY"] == "s3cret" and env["OPENAI_API_KEY"] == "sk-test"
    assert "s3cret" not in (ROOT / "docker-compose.yml").read_text()


# Several real processes for a minute or more: make test-heavy (CI's second step).
@pytest.mark.heavy
def test_same_topology_without_docker(tmp_path: Path) -> None:
    """Ingest through one process, query through another, both against one
    `chroma run` server; a later ingest shows up in the API's BM25 side too;
    an API restart loses nothing."""
    port = free_port()
    chroma = start_chroma(tmp_path / "chroma", port)
    url = f"http://127.0.0.1:{port}"
    citeqa = str(VENV_BIN / "citeqa")
    ingest_env = base_env(
        CITEQA_CHROMA_URL=url, CITEQA_DATA_DIR=str(tmp_path / "ingest-disk"), HF_HUB_OFFLINE="1"
    )
    api_env = base_env(
        CITEQA_CHROMA_URL=url,
        CITEQA_DATA_DIR=str(tmp_path / "api-disk"),
        CITEQA_RETRIEVAL__LEXICAL_REFRESH_SECONDS="0.5",
    )
    api = None
    try:
        done = subprocess.run(
            [citeqa, "ingest", str(SAMPLE), "--json"],
            env=ingest_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["added"] == 61
        api, api_url = start_api(api_env, tmp_path / "api.log")
        hits = httpx.get(f"{api_url}/v1/search", params={"q": "random forests smoothers"}).json()
        assert hits["results"][0]["title"].startswith("Why do Random Forests Work?")

        extra = tmp_path / "new.jsonl"
        extra.write_text(
            json.dumps(
                {
                    "id": "2403.11111",
                    "title": "Zorbulation Networks",
                    "abstract": "We introduce zorbulation, a training trick for sparse mixtures "
                    "that halves the memory of expert routing.",
                }
            )
            + "\n"
        )
        done = subprocess.run(
            [citeqa, "ingest", str(extra), "--json"],
            env=ingest_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 20
        found = []
        while time.monotonic() < deadline and not found:
            r = httpx.get(f"{api_url}/v1/search", params={"q": "zorbulation", "mode": "bm25"})
            found = [h for h in r.json()["results"] if h["paper_id"] == "2403.11111"]
            time.sleep(0.3)
        assert found, "the API's BM25 index did not follow the collection"
        assert not (tmp_path / "api-disk").exists() or not any(
            (tmp_path / "api-disk").rglob("*.npz")
        )

        before = httpx.get(f"{api_url}/readyz").json()["store"]
        stop(api)
        api, api_url = start_api(api_env, tmp_path / "api.log")
        after = httpx.get(f"{api_url}/readyz").json()["store"]
        assert (
            (after["papers"], after["chunks"])
            == (before["papers"], before["chunks"])
            == (62, before["chunks"])
        )
        r = httpx.get(f"{api_url}/v1/search", params={"q": "zorbulation", "mode": "bm25"})
        assert r.json()["results"][0]["paper_id"] == "2403.11111"
    finally:
        if api is not None:
            stop(api)
        stop(chroma)
