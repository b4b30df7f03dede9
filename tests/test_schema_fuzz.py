"""schemathesis against the app's own OpenAPI schema: whatever a client sends,
no 5xx, and every error is a well-formed JSON error body."""

from __future__ import annotations

from collections import Counter
from itertools import product

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis.errors import Unsatisfiable
from pydantic import SecretStr
from schemathesis import GenerationMode

from api.app import create_app
from ingest.job import IngestJob
from rag.index.store import open_store
from rag.settings import ApiSettings, Settings
from tests.helpers import SAMPLE

pytestmark = pytest.mark.slow

ADMIN = "fuzz-admin-key-123"


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, embeddings):  # type: ignore[no-untyped-def]
    """The app over its own copy of the sample store: the fuzzer uploads and deletes."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("schema-store"),
        admin_key=SecretStr(ADMIN),
        api=ApiSettings(rate_limit="1000000/minute"),
    )
    store = open_store(settings)
    IngestJob(store, embeddings, settings, progress=False).run([str(SAMPLE)])
    app = create_app(settings, store=store, embeddings=embeddings)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def check(case) -> int:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {ADMIN}", **(case.headers or {})}
    response = case.call(headers=headers)
    where = (case.method, case.path, response.status_code, response.text[:300])
    assert response.status_code < 500, where
    if response.status_code >= 400:
        err = response.json()["error"]
        assert isinstance(err["message"], str) and err["message"], where
        assert {"message", "type", "code"} <= set(err), where
    return response.status_code


def test_no_5xx_and_every_error_is_json(api_schema) -> None:  # type: ignore[no-untyped-def]
    """Each operation of the schema, fuzzed by hypothesis (schemathesis' strategies,
    driven here directly: its pytest plugin lags pytest 9)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    seen: Counter[int] = Counter()
    for operation, mode in product(operations, list(GenerationMode)):
        strategy = operation.as_strategy(mode)

        @hsettings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case) -> None:  # type: ignore[no-untyped-def]
            seen[check(case)] += 1

        try:
            run()
        except Unsatisfiable:  # nothing to break in an operation without inputs
            assert mode is GenerationMode.NEGATIVE
    # Both sides were reached: answers, and rejected input.
    assert seen[200] > 0 and sum(n for code, n in seen.items() if 400 <= code < 500) > 0, seen
