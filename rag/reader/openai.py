"""Any OpenAI-compatible chat server reads the paper (llama.cpp's server, vLLM,
Ollama, OpenAI).

One request per read, a few tokens long at temperature 0: the reply is "Yes,
sentence C" or "No". P(answers) comes from the first token's logprobs when the
server returns them (P(Yes) over P(Yes) + P(No) among its top alternatives);
otherwise (a server without logprobs, or `reader.logprobs` off) the reply's
Yes or No counts as 0.95 or 0.05. The sentence is the label the reply names.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, ClassVar

import httpx
import openai

from rag.reader import (
    ReaderTimeout,
    ReaderUnavailable,
    ReadResult,
    label_in,
    messages,
    remaining,
    sentences,
    yes_no,
)
from rag.settings import Settings
from rag.types import Source

CONSTRAINED = {"yes": 0.95, "no": 0.05}
"""P(answers) for a bare Yes / No reply (no logprobs): sure, but not certain."""
TOP = 10
MAX_TOKENS = 6


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


class OpenAIReader:
    name: ClassVar[str] = "openai"

    def __init__(self, settings: Settings) -> None:
        cfg = settings.reader
        self.base_url = cfg.base_url or settings.openai_base_url
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "none"
        self.client = openai.OpenAI(
            base_url=self.base_url, api_key=key, max_retries=0, timeout=settings.request_timeout
        )
        self.model = cfg.openai_model
        self.logprobs = cfg.logprobs
        self.timeout = settings.request_timeout

    def _ask(self, msgs: list[dict[str, str]], timeout: float, logprobs: bool) -> Any:
        extra: dict[str, Any] = {"logprobs": True, "top_logprobs": TOP} if logprobs else {}
        return self.client.chat.completions.create(
            model=self.model,
            messages=msgs,  # type: ignore[arg-type]
            max_tokens=MAX_TOKENS,
            temperature=0.0,
            timeout=timeout,
            **extra,
        )

    def read(
        self,
        question: str,
        paper: Source,
        *,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> ReadResult:
        t0 = time.perf_counter()
        left = remaining(deadline, cancel)
        timeout = self.timeout if left is None else min(self.timeout, left)
        labelled = sentences(paper.abstract)
        msgs = messages(question, paper, labelled)
        try:
            reply = self._ask(msgs, timeout, self.logprobs)
        except openai.APITimeoutError as exc:
            raise ReaderTimeout(
                f"the reader's server did not answer within {timeout:.3g}s"
            ) from exc
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            raise ReaderUnavailable(f"the reader's server failed: {_describe(exc)}") from exc
        remaining(deadline, cancel)
        choice = reply.choices[0]
        text = choice.message.content or ""
        p, method = self._probability(choice), "logprobs"
        if p is None:
            answer = yes_no(text)
            if answer is None:
                raise ReaderUnavailable(f"the reader's reply is neither Yes nor No: {text[:80]!r}")
            p, method = CONSTRAINED[answer], "constrained"
        return ReadResult(
            p_answers=p,
            sentence=label_in(text, labelled) if yes_no(text) == "yes" else None,
            reader=self.name,
            seconds=time.perf_counter() - t0,
            detail={"method": method, "reply": text[:40]},
        )

    @staticmethod
    def _probability(choice: Any) -> float | None:
        """P(Yes) / (P(Yes) + P(No)) from the first token's alternatives, when given."""
        content = getattr(choice.logprobs, "content", None) if choice.logprobs else None
        if not content:
            return None
        first = content[0]
        alts = list(first.top_logprobs or []) or [first]
        mass = {"yes": 0.0, "no": 0.0}
        for alt in alts:
            answer = yes_no(alt.token)
            if answer is not None and alt.logprob is not None:
                mass[answer] += math.exp(alt.logprob)
        total = mass["yes"] + mass["no"]
        if total <= 0:
            return None
        return mass["yes"] / total

    @classmethod
    def check(cls, settings: Settings, timeout: float) -> dict[str, Any]:
        base = (settings.reader.base_url or settings.openai_base_url or "").rstrip("/")
        if not base:
            return {"ok": False, "reason": "no server: set reader.base_url or openai_base_url"}
        headers = {}
        if settings.openai_api_key:
            headers["Authorization"] = f"Bearer {settings.openai_api_key.get_secret_value()}"
        try:
            r = httpx.get(f"{base}/models", headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            return {"ok": False, "base_url": base, "reason": f"unreachable: {type(exc).__name__}"}
        if r.status_code >= 400:
            reason = f"GET /models answered HTTP {r.status_code}"
            return {"ok": False, "base_url": base, "reason": reason}
        return {"ok": True, "base_url": base}
