"""POST /v1/chat: a cited answer as JSON, or streamed as server-sent events.

The stream sends `token` events with the draft as the generator writes it
(`reset` if the draft is abandoned for the fallback), then `citations` with
the verified citations, then `done` with the whole verified answer, the same
object the JSON mode returns. Verification may drop or renumber markers of
the draft, so a client shows the `done` text as the final answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.conversation import to_question
from api.deps import ChainDep, MetricsDep, Reader, SettingsDep
from api.errors import error_body
from api.middleware import Metrics
from api.schemas import ChatRequest, ChatResponse
from rag.chain import Question
from rag.store import StoreUnavailable
from rag.types import Answer

router = APIRouter(tags=["chat"], dependencies=[Reader])

_STREAM_DOC = {
    200: {
        "description": "JSON (`stream: false`) or `text/event-stream` (`stream: true`) with "
        "events `token` {text}, `reset` {}, `citations` {citations}, `done` {answer object}, "
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
    response_model=ChatResponse,
    summary="Answer a question with a cited summary",
    responses=_STREAM_DOC,  # type: ignore[arg-type]
)
async def chat(body: ChatRequest, chain: ChainDep, settings: SettingsDep, metrics: MetricsDep):  # type: ignore[no-untyped-def]
    q = question_of(body, settings)
    if not body.stream:
        answer: Answer = await run_in_threadpool(chain.invoke, q)
        metrics.observe_answer(answer.timings, answer.refused, answer.degraded)
        return answer.to_json()
    events = chain.stream(q)
    # Retrieval runs before the first event: a store outage is still a plain 503 here.
    first = await run_in_threadpool(next, events, None)
    return EventSourceResponse(_sse(first, events, metrics), ping=10)


def _sse(
    first: dict[str, Any] | None, events: Iterator[dict[str, Any]], metrics: Metrics
) -> Iterator[ServerSentEvent]:
    def all_events() -> Iterator[dict[str, Any]]:
        if first is not None:
            yield first
        yield from events

    try:
        for event in all_events():
            kind = event["type"]
            if kind == "token":
                yield ServerSentEvent(json.dumps({"text": event["text"]}), event="token")
            elif kind == "reset":
                yield ServerSentEvent("{}", event="reset")
            elif kind == "answer":
                answer: Answer = event["answer"]
                metrics.observe_answer(answer.timings, answer.refused, answer.degraded)
                data = answer.to_json()
                yield ServerSentEvent(
                    json.dumps({"citations": data["citations"]}, ensure_ascii=False),
                    event="citations",
                )
                yield ServerSentEvent(json.dumps(data, ensure_ascii=False), event="done")
    except StoreUnavailable as exc:
        body = error_body(str(exc), "service_unavailable", code="store_unavailable")
        yield ServerSentEvent(json.dumps(body), event="error")
    except Exception:  # the status line is gone: report in-band, never a traceback
        body = error_body("internal error", "server_error", code="internal")
        yield ServerSentEvent(json.dumps(body), event="error")
