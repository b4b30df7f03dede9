"""Getting the reader's model (rag/reader/models.py): the chunk packages'
parts concatenated in order, checked by size and sha256, and left alone once
whole. The real packages are what `make reader-model` installs; here small
parts stand in for them, so nothing is downloaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rag.reader.models import MODELS, ModelError, ModelSpec, assemble, fetch, model_path


def _spec(tmp_path: Path, parts: list[bytes], sha: str | None = None) -> ModelSpec:
    whole = b"".join(parts)
    for i, data in enumerate(parts, 1):
        (tmp_path / f"part{i:02d}.bin").write_bytes(data)
    return ModelSpec(
        name="tiny",
        title="t",
        package="none-",
        parts=len(parts),
        version="0",
        size=len(whole),
        sha256=sha or hashlib.sha256(whole).hexdigest(),
        upstream="-",
        licence="-",
    )


def test_assembly_concatenates_parts_in_order_and_checks_the_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ModelSpec, "part_path", lambda self, i: tmp_path / f"part{i:02d}.bin")
    spec = _spec(tmp_path, [b"GGUF-one-", b"two-", b"three"])
    out = assemble(spec, tmp_path / "models" / "tiny.gguf")
    assert out.read_bytes() == b"GGUF-one-two-three"

    bad = _spec(tmp_path, [b"GGUF-one-", b"two-", b"three"], sha="0" * 64)
    target = tmp_path / "models" / "bad.gguf"
    with pytest.raises(ModelError, match="expected 18 bytes with sha256 0000"):
        assemble(bad, target)
    assert not target.exists() and not list((tmp_path / "models").glob("*.part"))


def test_fetch_leaves_a_whole_file_alone_and_knows_its_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ModelSpec, "part_path", lambda self, i: tmp_path / f"part{i:02d}.bin")
    spec = _spec(tmp_path, [b"abc", b"def"])
    monkeypatch.setitem(MODELS, "tiny", spec)
    assemble(spec, model_path("tiny", tmp_path))

    def no_pip(spec: ModelSpec) -> None:
        raise AssertionError("a whole file needs no install")

    monkeypatch.setattr("rag.reader.models.install_packages", no_pip)
    assert fetch("tiny", tmp_path).read_bytes() == b"abcdef"
    with pytest.raises(ModelError, match="unknown reader model 'nope'"):
        fetch("nope", tmp_path)
    assert {"qwen-0.5b", "qwen-1.5b"} <= set(MODELS)
