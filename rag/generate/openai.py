"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp's server) via
langchain-openai's ChatOpenAI, streamed. Citations are plain-text [n] markers,
which every backend can write; no structured-output features are required."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import httpx
import openai
from langchain_openai import ChatOpenAI

from rag.check.support import SentenceEncoder
from rag.generate import GeneratorUnavailable
from rag.generate.prompt import REWRITE, messages
from rag.settings import Settings
from rag.types import Source

# What the model client raises when the server is unreachable, refuses or fails.
CLIENT_ERRORS: tuple[type[BaseException], ...] = (openai.OpenAIError, httpx.HTTPError)


def make_chat_model(settings: Settings, *, max_tokens: int | None = None) -> ChatOpenAI:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
    return ChatOpenAI(
        model=settings.llm_model,
        base_url=settings.openai_base_url,
        api_key=key,  # type: ignore[arg-type]
        # The chain's deadline (llm_timeout) decides when an answer falls back; the
        # client's own timeout is only a backstop behind it, so the two never race.
        timeout=settings.llm_timeout + 2.0,
        max_retries=0,  # the chain falls back instead of retrying past its deadline
        temperature=settings.llm_temperature,
        max_tokens=max_tokens or settings.llm_max_tokens,  # type: ignore[call-arg]
        streaming=True,
    )


def describe(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{name}: {text}"[:300]


class OpenAIGenerator:
    name: ClassVar[str] = "openai"
    uses_model: ClassVar[bool] = True

    def __init__(self, settings: Settings, encoder: SentenceEncoder | None = None) -> None:
        self.model = make_chat_model(settings)
        self.rewriter = make_chat_model(settings, max_tokens=64)

    def stream(
        self,
        question: str,
        sources: list[Source],
        *,
        query_vector: Sequence[float] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        try:
            # Leaving the loop closes the stream, and with it the HTTP response:
            # a cancelled answer stops costing the server tokens.
            for chunk in self.model.stream(messages(question, sources)):
                if cancel is not None and cancel.is_set():
                    return
                text = chunk.content if isinstance(chunk.content, str) else ""
                if text:
                    yield text
        except CLIENT_ERRORS as exc:
            raise GeneratorUnavailable(f"the model failed: {describe(exc)}") from exc

    def rewrite(
        self, history: list[tuple[str, str]], question: str, cancel: threading.Event | None = None
    ) -> str | None:
        convo = [("system", REWRITE), *history, ("user", question)]
        try:
            return str(self.rewriter.invoke(convo).content).strip()
        except CLIENT_ERRORS as exc:
            raise GeneratorUnavailable(f"the model failed: {describe(exc)}") from exc

    @classmethod
    def check(cls, settings: Settings, timeout: float) -> dict[str, Any]:
        """Lists the server's models: reachable, and the key accepted."""
        base = (settings.openai_base_url or "https://api.openai.com/v1").rstrip("/")
        headers = {}
        if settings.openai_api_key:
            headers["Authorization"] = f"Bearer {settings.openai_api_key.get_secret_value()}"
        result: dict[str, Any] = {"base_url": base}
        try:
            r = httpx.get(f"{base}/models", headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            return {**result, "ok": False, "reason": f"unreachable: {type(exc).__name__}"}
        result["status"] = r.status_code
        if r.status_code in (401, 403):
            reason = f"the server refused the API key (HTTP {r.status_code})"
            return {**result, "ok": False, "reason": reason}
        if r.status_code >= 400:
            return {**result, "ok": False, "reason": f"GET /models answered HTTP {r.status_code}"}
        return {**result, "ok": True}
