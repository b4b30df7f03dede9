"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp's server) via
langchain-openai's ChatOpenAI, streamed. Citations are plain-text [n] markers,
which every backend can write; no structured-output features are required."""

from __future__ import annotations

from collections.abc import Iterator

from langchain_openai import ChatOpenAI

from rag.generate.prompt import REWRITE, messages
from rag.settings import Settings
from rag.types import Source


def make_chat_model(settings: Settings, *, max_tokens: int | None = None) -> ChatOpenAI:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
    return ChatOpenAI(
        model=settings.llm_model,
        base_url=settings.openai_base_url,
        api_key=key,  # type: ignore[arg-type]
        timeout=settings.llm_timeout,
        max_retries=0,  # the chain falls back instead of retrying past its deadline
        temperature=settings.llm_temperature,
        max_tokens=max_tokens or settings.llm_max_tokens,  # type: ignore[call-arg]
        streaming=True,
    )


class OpenAIGenerator:
    name = "openai"

    def __init__(self, settings: Settings) -> None:
        self.model = make_chat_model(settings)
        self.rewriter = make_chat_model(settings, max_tokens=64)

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        for chunk in self.model.stream(messages(question, sources)):
            text = chunk.content if isinstance(chunk.content, str) else ""
            if text:
                yield text

    def rewrite(self, history: list[tuple[str, str]], question: str) -> str:
        convo = [("system", REWRITE), *history, ("user", question)]
        return str(self.rewriter.invoke(convo).content).strip()
