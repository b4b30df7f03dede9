"""Answer generators. Each turns a question and numbered sources into text with [n] markers.

`extractive` needs no model; `openai` speaks to any OpenAI-compatible server;
`llamacpp` runs a local GGUF in-process. `make_generator` is the one place
providers are chosen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from rag.settings import Settings
from rag.support import SentenceEncoder
from rag.types import Source


class Generator(Protocol):
    name: str

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        """Answer text, piece by piece."""
        ...


class GeneratorUnavailable(RuntimeError):
    """The model cannot be reached, failed, or took too long."""


def make_generator(name: str, settings: Settings, encoder: SentenceEncoder) -> Generator:
    if name == "extractive":
        from rag.generate.extractive import ExtractiveGenerator

        return ExtractiveGenerator(encoder)
    if name == "openai":
        from rag.generate.openai import OpenAIGenerator

        return OpenAIGenerator(settings)
    if name == "llamacpp":
        from rag.generate.llamacpp import LlamaCppGenerator

        return LlamaCppGenerator(settings)
    raise ValueError(f"unknown generator '{name}' (extractive, openai, llamacpp)")


def check_generator(name: str, settings: Settings, timeout: float = 3.0) -> dict[str, object]:
    """Can `name` answer right now? Cheap: lists the server's models, or finds the file."""
    if name == "extractive":
        return {"ok": True, "generator": name}
    if name == "openai":
        import httpx

        base = (settings.openai_base_url or "https://api.openai.com/v1").rstrip("/")
        headers = {}
        if settings.openai_api_key:
            headers["Authorization"] = f"Bearer {settings.openai_api_key.get_secret_value()}"
        try:
            r = httpx.get(f"{base}/models", headers=headers, timeout=timeout)
            ok = r.status_code < 500 and r.status_code != 404
            result: dict[str, object] = {"ok": ok, "generator": name, "status": r.status_code}
        except httpx.HTTPError as exc:
            result = {"ok": False, "generator": name, "error": type(exc).__name__}
        result["base_url"] = base
        return result
    if name == "llamacpp":
        import importlib.util
        import os

        from rag.generate.llamacpp import default_model_path

        try:
            path = settings.llamacpp_model_path or default_model_path()
        except RuntimeError as exc:
            return {"ok": False, "generator": name, "error": str(exc)}
        ok = os.path.isfile(path) and importlib.util.find_spec("llama_cpp") is not None
        return {"ok": ok, "generator": name, "model_path": path}
    return {"ok": False, "generator": name, "error": "unknown generator"}
