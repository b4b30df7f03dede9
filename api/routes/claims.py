"""POST /v1/verify: does the corpus support or contradict a claim? As JSON, or
streamed as server-sent events: `paper` {a paper that bears on the claim, its
label and rationale} as each is judged, then `done` {the whole check}."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import Field, model_validator
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.conversation import Invalid
from api.deps import ChainDep, Reader, SettingsDep
from api.errors import error_body
from api.schemas import FiltersIn, Strict
from rag.claims import ClaimCheck, check_claim, stream_claim
from rag.index.store import StoreUnavailable

router = APIRouter(tags=["claims"], dependencies=[Reader])
log = logging.getLogger(__name__)


class ClaimRequest(Strict):
    model_config = Strict.model_config | {
        "json_schema_extra": {
            "examples": [
                {"claim": "Vitamin D supplementation reduces the risk of fractures."},
                {
                    "claim": "Statins increase the risk of hip fractures.",
                    "filters": {"year_min": 2000},
                    "top_k": 5,
                    "stream": True,
                },
            ]
        }
    }

    claim: str = Field(description="The claim to check, one statement.")
    top_k: int | None = Field(None, description="Papers to judge (default from settings).")
    filters: FiltersIn | None = None
    stream: bool = Field(False, description="Answer as server-sent events.")

    @model_validator(mode="after")
    def _strip(self) -> ClaimRequest:
        self.claim = self.claim.strip()
        return self


_STREAM_DOC = {
    200: {
        "description": "JSON (`stream: false`) or `text/event-stream` (`stream: true`) with "
        "events `paper` {a paper's label and rationale}, `done` {the check object}, or "
        "`error` {error}.",
        "content": {"text/event-stream": {}},
    }
}


def _check_limits(body: ClaimRequest, settings: Any) -> None:
    limits = settings.api
    if not body.claim:
        raise Invalid("the claim is empty", param="claim")
    if len(body.claim) > limits.max_question_chars:
        raise Invalid(
            f"the claim is longer than {limits.max_question_chars} characters",
            param="claim",
            code="too_long",
        )
    if body.top_k is not None and not 1 <= body.top_k <= limits.max_top_k:
        raise Invalid(f"top_k must be between 1 and {limits.max_top_k}", param="top_k")


@router.post(
    "/v1/verify",
    response_model=ClaimCheck,
    summary="Check a claim: which papers support it, which contradict it",
    responses=_STREAM_DOC,  # type: ignore[arg-type]
)
async def verify_claim(body: ClaimRequest, chain: ChainDep, settings: SettingsDep):  # type: ignore[no-untyped-def]
    _check_limits(body, settings)
    filters = body.filters.to_filters() if body.filters else None
    if not body.stream:
        return await run_in_threadpool(
            check_claim,
            body.claim,
            chain.retriever,
            chain.encoder,
            k=body.top_k,
            filters=filters,
        )
    events = stream_claim(body.claim, chain.retriever, chain.encoder, k=body.top_k, filters=filters)
    first = await run_in_threadpool(next, events, None)  # a store outage is still a 503
    return EventSourceResponse(_sse(first, events), ping=10)


async def _sse(
    first: dict[str, Any] | None, events: Iterator[dict[str, Any]]
) -> AsyncIterator[ServerSentEvent]:
    try:
        event = first
        while event is not None:
            if event["type"] == "paper":
                data = event["paper"].model_dump(mode="json")
            else:
                data = event["check"].to_json()
            yield ServerSentEvent(json.dumps(data, ensure_ascii=False), event=event["type"])
            event = await run_in_threadpool(next, events, None)
    except StoreUnavailable as exc:
        body = error_body(str(exc), "service_unavailable", code="store_unavailable")
        yield ServerSentEvent(json.dumps(body), event="error")
    except Exception:  # the status line is gone: report in-band, never a traceback
        log.exception("the claim stream failed")
        yield ServerSentEvent(
            json.dumps(error_body("internal error", "server_error", code="internal")), event="error"
        )
