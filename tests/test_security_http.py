"""Issue 15, what a hostile client found, against `citeqa serve` under a real uvicorn
on loopback: the parts that depend on the HTTP server itself (proxy headers, chunked
bodies, the access log). Each test speaks from its own loopback address
(127.0.0.x), so the per-address budgets of one test do not leak into another."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import VENV_BIN, free_port, stop, wait_http

pytestmark = pytest.mark.slow

ADMIN = "adm-5b1e0c7d9a"
RATE = 5  # requests per minute per client on the test server


def _serve(tmp: Path, extra: dict[str, str]) -> tuple[subprocess.Popen, str, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env.update(
        CITEQA_DATA_DIR=str(tmp / "data"),
        HF_HUB_OFFLINE="1",
        CITEQA_ADMIN_KEY=ADMIN,
        CITEQA_API__RATE_LIMIT=f"{RATE}/minute",
        CITEQA_API__MAX_BODY_BYTES="2048",
        CITEQA_API__MAX_UPLOAD_BYTES="8192",
        CITEQA_RETRIEVAL__WARM_SENTENCES="0",
        **extra,
    )
    port = free_port()
    log_path = tmp / "serve.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(VENV_BIN / "citeqa"), "serve", "--port", str(port), "--log-level", "info"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", timeout=120, proc=proc)
    except Exception:
        stop(proc)
        raise
    return proc, url, log_path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Reads open (no CITEQA_API_KEYS), writes with the admin key, no trusted proxy."""
    proc, url, log = _serve(tmp_path_factory.mktemp("sec-served"), {})
    try:
        yield url, log
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same, with 127.0.0.9 configured as the one trusted proxy."""
    proc, url, _ = _serve(
        tmp_path_factory.mktemp("sec-proxied"),
        {"CITEQA_API__TRUSTED_PROXIES": '["127.0.0.9"]'},
    )
    try:
        yield url
    finally:
        stop(proc)


def client_from(source: str) -> httpx.Client:
    """A client whose connections come from loopback address `source`."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30)


def statuses(c: httpx.Client, url: str, n: int, headers=lambda i: {}) -> list[int]:  # type: ignore[no-untyped-def]
    return [c.get(f"{url}/v1/models", headers=headers(i)).status_code for i in range(n)]


# -- item 2: the rate limit is keyed on who the server verified -------------------------


def test_random_bearer_tokens_do_not_buy_fresh_budgets(served) -> None:  # type: ignore[no-untyped-def]
    url, _ = served
    with client_from("127.0.0.2") as c:
        codes = statuses(c, url, RATE + 3, lambda i: {"Authorization": f"Bearer {uuid.uuid4()}"})
    assert codes[:RATE] == [200] * RATE
    assert codes[RATE:] == [429] * 3, codes


def test_forwarded_for_from_an_untrusted_peer_is_ignored(served) -> None:  # type: ignore[no-untyped-def]
    url, _ = served
    # 127.0.0.1 is the peer uvicorn trusts by default; no proxy is configured here.
    with client_from("127.0.0.1") as c:
        codes = statuses(c, url, RATE + 3, lambda i: {"X-Forwarded-For": f"198.51.100.{i + 1}"})
    assert codes[RATE:] == [429] * 3, codes


def test_failed_admin_keys_are_counted_and_throttled(served) -> None:  # type: ignore[no-untyped-def]
    url, _ = served
    with client_from("127.0.0.4") as c:
        codes = [
            c.delete(f"{url}/v1/papers/x", headers={"Authorization": f"Bearer guess-{i}"})
            for i in range(40)
        ]
        status = [r.status_code for r in codes]
        # The right key from the same address now waits too: a 200/404 after a run of
        # 429s would tell a guesser that this guess was the key.
        right = c.delete(f"{url}/v1/papers/x", headers={"Authorization": f"Bearer {ADMIN}"})
    assert set(status[:10]) == {401}
    assert 429 in status and set(status[status.index(429) :]) == {429}, status
    assert int(codes[-1].headers["retry-after"]) >= 1
    assert right.status_code == 429


def test_forwarded_for_is_honoured_only_from_a_trusted_proxy(proxied: str) -> None:
    def via(ip: str):  # type: ignore[no-untyped-def]
        return lambda i: {"X-Forwarded-For": ip}

    with client_from("127.0.0.9") as proxy:
        first = statuses(proxy, proxied, RATE + 1, via("203.0.113.7"))
        other = statuses(proxy, proxied, 1, via("203.0.113.8"))
    assert first == [200] * RATE + [429] and other == [200]
    with client_from("127.0.0.1") as direct:  # not a trusted proxy: its own address counts
        codes = statuses(direct, proxied, RATE + 1, lambda i: {"X-Forwarded-For": f"10.1.1.{i}"})
    assert codes == [200] * RATE + [429]


# -- item 6: any body over the limit is a 413, chunked or not -----------------------------


def _chunked(data: bytes, size: int = 700) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_chunked_chat_body_over_the_limit_is_413(served) -> None:  # type: ignore[no-untyped-def]
    url, _ = served
    body = b'{"question": "' + b"x" * 3000 + b'"}'
    with client_from("127.0.0.5") as c:
        r = c.post(
            f"{url}/v1/chat",
            content=_chunked(body),
            headers={"content-type": "application/json"},
        )
        assert "content-length" not in r.request.headers  # really sent chunked
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "request_too_large"
        # A chunked body under the limit is still read and answered.
        small = c.post(
            f"{url}/v1/chat",
            content=_chunked(b'{"question": "trees", "colour": 1}'),
            headers={"content-type": "application/json"},
        )
        assert small.status_code == 422


def test_chunked_upload_over_the_limit_is_413(served) -> None:  # type: ignore[no-untyped-def]
    url, _ = served
    boundary = "citeqa-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + b"x" * 20_000
        + f"\r\n--{boundary}--\r\n".encode()
    )
    with client_from("127.0.0.6") as c:
        r = c.post(
            f"{url}/v1/ingest",
            content=_chunked(body, 4096),
            headers={
                "content-type": f"multipart/form-data; boundary={boundary}",
                "Authorization": f"Bearer {ADMIN}",
            },
        )
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "request_too_large"


# -- item 7: what the server logs and what /readyz shows ---------------------------------


def test_access_log_keeps_no_query_string(served) -> None:  # type: ignore[no-untyped-def]
    import time

    url, log = served
    secret = "sk-in-the-url-4f9a2c"
    with client_from("127.0.0.7") as c:
        r = c.get(f"{url}/v1/search", params={"q": "trees", "api_key": secret})
        assert r.status_code == 200, r.text
        c.get(f"{url}/healthz?{secret}")
    line = '"GET /v1/search?<redacted> HTTP/1.1" 200'
    deadline = time.monotonic() + 10
    while line not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert line in text and '"GET /healthz?<redacted> HTTP/1.1" 200' in text
    assert secret not in text and "trees" not in text


def test_readyz_shows_no_filesystem_path(served) -> None:  # type: ignore[no-untyped-def]
    url, log = served
    with client_from("127.0.0.8") as c:
        r = c.get(f"{url}/readyz")
    assert r.status_code == 200
    data_dir = log.parent / "data"
    assert str(data_dir) not in r.text and str(log.parent) not in r.text
    assert r.json()["store"]["kind"] == "embedded"
