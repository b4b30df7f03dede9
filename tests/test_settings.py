"""Settings come from CITEQA_* variables; the collection follows the vectors' recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rag.settings import Settings


def test_environment_is_read_with_prefix_and_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITEQA_DATA_DIR", "/tmp/somewhere")
    monkeypatch.setenv("CITEQA_CHROMA_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("CITEQA_CHUNKING__SIZE", "500")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1")
    s = Settings()
    assert s.data_dir == Path("/tmp/somewhere")
    assert s.chroma_url == "http://127.0.0.1:9000"
    assert s.chunking.size == 500
    assert s.openai_api_key is not None and s.openai_api_key.get_secret_value() == "sk-test"
    assert "sk-test" not in repr(s)
    assert s.openai_base_url == "http://127.0.0.1:9999/v1"


def test_collection_name_changes_with_what_makes_vectors_comparable() -> None:
    base = Settings()
    assert base.collection_name.startswith("citeqa-")
    assert len(base.collection_name) >= 3
    assert Settings(chunking={"size": 500}).collection_name != base.collection_name
    assert Settings(chunking={"overlap": 10}).collection_name != base.collection_name
    every = Settings(chunking={"title": "every"}).collection_name
    assert every != Settings(chunking={"title": "first"}).collection_name
    assert Settings(embedding={"model": "other"}).collection_name != base.collection_name
    # Things that do not change vectors keep the collection.
    assert Settings(port=9000, embedding={"batch_size": 8}).collection_name == base.collection_name


def test_stores_built_before_issue_16_are_not_reused() -> None:
    """The chunking default changed (issue 16): a store of the old chunks gets a new
    collection name, so it is re-ingested rather than mixed with the new chunks."""
    import hashlib
    import json

    old_key = {"provider": "local", "model": "all-MiniLM-L6-v2", "chunk_size": 800}
    old_key["chunk_overlap"] = 200
    old = hashlib.sha256(json.dumps(old_key, sort_keys=True).encode()).hexdigest()[:10]
    assert Settings().collection_name != f"citeqa-{old}"
    assert Settings(chunking={"size": 800, "overlap": 200}).collection_name != f"citeqa-{old}"


def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError):
        Settings(chunking={"size": 10})
    with pytest.raises(ValidationError):
        Settings(chunking={"size": 800, "bogus": 1})
    monkeypatch.setenv("CITEQA_EMBEDDING__PROVIDER", "nonsense")
    with pytest.raises(ValidationError):
        Settings()
