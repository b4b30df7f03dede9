"""Issue 15, what a hostile client found, in-process (TestClient): who the rate limit
counts, request text that is not Unicode, ingest reports, links and markup in
answers, message caps, and what /readyz shows. The parts that need a real uvicorn
(proxy headers, chunked bodies, the access log) are in test_security_http.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from rag.settings import ApiSettings, Settings


def _client(settings: Settings, store, embeddings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(settings, store=store, embeddings=embeddings)) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- item 2: limits keyed on the verified identity; failed keys counted ------------------


@pytest.fixture
def locked(sample_settings, sample_store, embeddings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = sample_settings.model_copy(
        update={
            "api_keys": [SecretStr("reader-one"), SecretStr("reader-two")],
            "admin_key": SecretStr("admin-key"),
            # auth_failure_limit is left at its default, 10/minute
            "api": ApiSettings(rate_limit="5/minute"),
        }
    )
    yield from _client(settings, sample_store, embeddings)


def test_wrong_keys_are_throttled_before_they_are_checked(locked: TestClient) -> None:
    codes = [locked.get("/v1/models", headers=bearer(f"guess-{i}")).status_code for i in range(300)]
    assert codes[:10] == [401] * 10
    assert codes[10:] == [429] * 290
    r = locked.get("/v1/models", headers=bearer("reader-one"))
    # The right key waits too: 200 after a run of 429s would confirm a guess.
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["type"] == "rate_limit_error"


def test_each_verified_key_has_its_own_budget(locked: TestClient) -> None:
    one = [locked.get("/v1/models", headers=bearer("reader-one")).status_code for _ in range(6)]
    two = [locked.get("/v1/models", headers=bearer("reader-two")).status_code for _ in range(2)]
    assert one == [200] * 5 + [429] and two == [200, 200]
    # Missing keys are refused, not counted as guesses (they guess nothing).
    assert {locked.get("/v1/models").status_code for _ in range(12)} == {401}
    assert locked.get("/v1/models", headers=bearer("reader-two")).status_code == 200


def test_unchecked_tokens_share_the_address_budget(
    sample_settings, sample_store, embeddings
) -> None:
    settings = sample_settings.model_copy(update={"api": ApiSettings(rate_limit="5/minute")})
    for c in _client(settings, sample_store, embeddings):
        codes = [c.get("/v1/models", headers=bearer(f"tok-{i}")).status_code for i in range(8)]
        assert codes == [200] * 5 + [429] * 3
