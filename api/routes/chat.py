"""POST /v1/chat: a cited answer as JSON, or streamed as server-sent events.

The stream sends `token` events with the draft as the generator writes it
(`reset` if the draft is abandoned for the fallback), then `citations` with
the verified citations, then `done` with the whole verified answer, the same
object the JSON mode returns. Verification may drop or renumber markers of
the draft, so a client shows the `done` text as the final answer.

A client that goes away (a closed stream, or a JSON request cut off) cancels
its answer: model work stops at its next token.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.conversation import answer_unless_gone, to_question
from api.deps import ChainDep, MetricsDep, Reader, SettingsDep
from api.errors import error_body
from api.middleware import Metrics
from api.schemas import ChatRequest
from rag.chain import Event, Question
from rag.index.store import StoreUnavailable
from rag.types import Answer

router = APIRouter(tags=["chat"], dependencies=[Reader])
log = logging.getLogger(__name__)

_STREAM_DOC = {
    200: {
        "description": "JSON (`stream: false`) or `text/event-stream` (`stream: true`) with "
        "events `token` {text}, `reset` {}, `progress` {stage, step, paper_id, done, of} (the "
        "reader, when on), `citations` {citations}, `done` {answer object}, "
        "or `error` {error}.",
        "content": {"text/event-stream": {}},
    }
}


def question_of(body: ChatRequest, settings) -> Question:  # type: ignore[no-untyped-def]
    turns = (
        [("user", body.question or "")]
        if body.messages is None
        else [(m.role, m.content) for m in body.messages]
    )
    return to_question(
        settings,
        turns=turns,
        top_k=body.top_k,
        filters=body.filters.to_filters() if body.filters else None,
        llm=body.llm,
    )


@router.post(
    "/v1/chat",
    response_model=Answer,
    summary="Answer a question with a cited summary",
    responses=_STREAM_DOC,  # type: ignore[arg-type]
)
async def chat(
    body: ChatRequest,
    request: Request,
    chain: ChainDep,
    settings: SettingsDep,
    metrics: MetricsDep,
):  # type: ignore[no-untyped-def]
    q = question_of(body, settings)
    if not body.stream:
        answer = await answer_unless_gone(request, chain, q)
        metrics.observe_answer(answer.timings, answer.refused, answer.degraded)
        return answer
    q.cancel = threading.Event()
    events = chain.stream(q)
    # Retrieval runs before the first event: a store outage is still a plain 503 here.
    try:
        first = await run_in_threadpool(next, events, None)
    except BaseException:
        q.cancel.set()
        raise
    return EventSourceResponse(_sse(first, events, metrics, q.cancel), ping=10)


async def _sse(
    first: Event | None, events: Iterator[Event], metrics: Metrics, cancel: threading.Event
) -> AsyncIterator[ServerSentEvent]:
    try:
        event = first
        while event is not None:
            for sse in _to_sse(event, metrics):
                yield sse
            event = await run_in_threadpool(next, events, None)
    except StoreUnavailable as exc:
        body = error_body(str(exc), "service_unavailable", code="store_unavailable")
        yield ServerSentEvent(json.dumps(body), event="error")
    except Exception:  # the status line is gone: report in-band, never a traceback
        log.exception("the answer stream failed")
        body = error_body("internal error", "server_error", code="internal")
        yield ServerSentEvent(json.dumps(body), event="error")
    finally:
        cancel.set()  # the client went away, or the answer is done: stop any model work


def _to_sse(event: Event, metrics: Metrics) -> list[ServerSentEvent]:
    if event["type"] == "token":
        return [ServerSentEvent(json.dumps({"text": event["text"]}), event="token")]
    if event["type"] == "reset":
        return [ServerSentEvent("{}", event="reset")]
    if event["type"] == "progress":  # the reader starts on a paper (docs/reader.md)
        progress = {k: v for k, v in event.items() if k != "type"}
        return [ServerSentEvent(json.dumps(progress), event="progress")]
    answer: Answer = event["answer"]
    metrics.observe_answer(answer.timings, answer.refused, answer.degraded)
    data: dict[str, Any] = answer.to_json()
    return [
        ServerSentEvent(
            json.dumps({"citations": data["citations"]}, ensure_ascii=False), event="citations"
        ),
        ServerSentEvent(json.dumps(data, ensure_ascii=False), event="done"),
    ]
