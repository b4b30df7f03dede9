"""Answer generators: the protocol, the registry and the cache of built generators.

Each generator turns a question and numbered sources into text with [n]
markers. `extractive` needs no model; `openai` speaks to any OpenAI-compatible
server; `llamacpp` runs a local GGUF in-process. A new generator is one module
with a class that meets `Generator`, plus one line in `GENERATORS`: the settings'
choices, the CLI's, the API's request schema and the OpenAI model list all
derive from the registry.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from rag.types import Source

if TYPE_CHECKING:
    from rag.check.support import SentenceEncoder
    from rag.settings import Settings

# name -> "module:Class". Imported lazily: a model client loads only when used.
GENERATORS: dict[str, str] = {
    "extractive": "rag.generate.extractive:ExtractiveGenerator",
    "openai": "rag.generate.openai:OpenAIGenerator",
    "llamacpp": "rag.generate.llamacpp:LlamaCppGenerator",
}
FALLBACK = "extractive"
"""Answers when a model cannot (unreachable, failing, too slow, unsupported)."""

GeneratorName = Literal[tuple(GENERATORS)]  # type: ignore[valid-type]


class UnknownGenerator(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown generator '{name}' (one of: {', '.join(GENERATORS)})")
        self.name = name


class GeneratorUnavailable(RuntimeError):
    """The model cannot be reached, failed, took too long, or was cancelled.

    Generators raise this (and only this) for their model client's errors; any
    other exception is a bug and surfaces as one."""


class Generator(Protocol):
    name: ClassVar[str]
    uses_model: ClassVar[bool]
    """True when answers come from a model: they run under the LLM deadline, fall
    back to `FALLBACK` on failure, and may refuse in words."""

    def __init__(self, settings: Settings, encoder: SentenceEncoder) -> None: ...

    def stream(
        self,
        question: str,
        sources: list[Source],
        *,
        query_vector: Sequence[float] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        """Answer text, piece by piece; stops early once `cancel` is set."""
        ...

    def rewrite(
        self, history: list[tuple[str, str]], question: str, cancel: threading.Event | None = None
    ) -> str | None:
        """`question` made standalone with the chat `history`, or None when this
        generator has no model to do it (the chain then borrows earlier words)."""
        ...

    @classmethod
    def check(cls, settings: Settings, timeout: float) -> dict[str, Any]:
        """Can it answer now? Cheap: `ok`, and a `reason` when not."""
        ...


def generator_names() -> tuple[str, ...]:
    return tuple(GENERATORS)


def generator_class(name: str) -> type[Generator]:
    try:
        module, _, attr = GENERATORS[name].partition(":")
    except KeyError:
        raise UnknownGenerator(name) from None
    cls: type[Generator] = getattr(importlib.import_module(module), attr)
    return cls


def make_generator(name: str, settings: Settings, encoder: SentenceEncoder) -> Generator:
    return generator_class(name)(settings, encoder)


def check_generator(name: str, settings: Settings, timeout: float = 3.0) -> dict[str, Any]:
    """Is generator `name` usable right now? (`/readyz` reports this.)"""
    try:
        cls = generator_class(name)
    except (UnknownGenerator, ImportError) as exc:
        return {"ok": False, "generator": name, "reason": str(exc)}
    return {"generator": name, **cls.check(settings, timeout)}


class Generators:
    """Generators built on first use and kept, one per name (building a model
    client costs seconds of imports; a local model, its weights)."""

    def __init__(
        self,
        settings: Settings,
        encoder: SentenceEncoder,
        prebuilt: dict[str, Generator] | None = None,
    ) -> None:
        self.settings = settings
        self.encoder = encoder
        self._built: dict[str, Generator] = dict(prebuilt or {})
        self._lock = threading.Lock()

    def get(self, name: str) -> Generator:
        with self._lock:
            if name not in self._built:
                self._built[name] = make_generator(name, self.settings, self.encoder)
            return self._built[name]

    @property
    def fallback(self) -> Generator:
        return self.get(FALLBACK)
