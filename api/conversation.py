"""From a validated chat request to the chain's `Question`, with the limits applied,
and to its answer, cancelled if the client goes away."""

from __future__ import annotations

import asyncio
import threading

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from api.errors import ApiError, Forbidden
from rag.chain import AnswerCancelled, QAChain, Question
from rag.settings import Settings
from rag.types import Answer, Filters

_DISCONNECT_POLL = 0.25  # seconds between looks at whether a client is still there


class Invalid(ApiError):
    status = 422
    code = "invalid_value"


class ClientGone(ApiError):
    status = 499  # nginx's "client closed request": logged, never read
    code = "client_closed_request"


class GeneratorNotAllowed(Forbidden):
    code = "generator_not_allowed"


def to_question(
    settings: Settings,
    *,
    turns: list[tuple[str, str]],
    top_k: int | None,
    filters: Filters | None,
    llm: str | None,
) -> Question:
    """`turns` are (role, content) with the question last; system turns are ignored
    (the system prompt is ours: sources are data, never instructions)."""
    limits = settings.api
    if len(turns) > limits.max_messages:
        raise Invalid(f"at most {limits.max_messages} messages per request", param="messages")
    for role, content in turns:
        if len(content) > limits.max_question_chars:
            raise Invalid(
                f"a {role} message is longer than {limits.max_question_chars} characters",
                param="messages" if len(turns) > 1 else "question",
                code="too_long",
            )
    question = turns[-1][1].strip()
    if not question:
        raise Invalid("the question is empty", param="question")
    if top_k is not None and not 1 <= top_k <= limits.max_top_k:
        raise Invalid(f"top_k must be between 1 and {limits.max_top_k}", param="top_k")
    if llm is not None and llm not in settings.allowed_generators():
        raise GeneratorNotAllowed(
            f"this server does not let clients choose the '{llm}' generator; allowed: "
            f"{', '.join(settings.allowed_generators())} (set by CITEQA_LLM_ALLOWED)",
            param="llm",
        )
    history = [(r, c) for r, c in turns[:-1] if r in ("user", "assistant")]
    return Question(question, history=history, k=top_k, filters=filters, llm=llm)


async def answer_unless_gone(request: Request, chain: QAChain, q: Question) -> Answer:
    """`chain.invoke(q)` in a worker thread; if the client disconnects meanwhile,
    the answer is cancelled (its model work stops) and its result discarded."""
    q.cancel = q.cancel or threading.Event()
    task = asyncio.ensure_future(run_in_threadpool(chain.invoke, q))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL)
            if done:
                try:
                    return task.result()
                except AnswerCancelled as exc:  # nobody is there to read a reply
                    raise ClientGone(str(exc)) from exc
            if await request.is_disconnected():
                q.cancel.set()
    finally:
        q.cancel.set()  # also when this request is cancelled itself
