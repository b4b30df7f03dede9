"""The OpenAI wire format: POST /v1/chat/completions and GET /v1/models.

Any OpenAI client (the official SDK, LangChain's ChatOpenAI, Open WebUI)
talks to citeqa unchanged. The assistant's text is the cited summary followed
by a references list; the structured citations ride along in an extra
`citations` field (on the response, and on the last chunk of a stream).
Streams carry the verified answer: the text is checked before it is sent,
because an OpenAI client cannot take back text it has already shown.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.conversation import Invalid, answer_unless_gone, to_question
from api.deps import ChainDep, MetricsDep, Reader, SettingsDep
from api.errors import NotFound
from rag.generate import generator_names
from rag.settings import Settings
from rag.text import sentence_spans
from rag.types import Answer, web_url

router = APIRouter(tags=["openai"], dependencies=[Reader])

OWNER = "citeqa"


def model_ids(settings: Settings) -> dict[str, str | None]:
    """Model id -> the generator a client asks for: `citeqa` is the configured one
    (None: no choice made), `citeqa-<name>` each registered generator."""
    return {"citeqa": None, **{f"citeqa-{name}": name for name in generator_names()}}


def listed_models(settings: Settings) -> list[str]:
    """What GET /v1/models shows: `citeqa` and the generators clients may choose."""
    return ["citeqa", *(f"citeqa-{name}" for name in settings.allowed_generators())]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, ...: accepted, unused
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    # OpenAI clients send many optional parameters (temperature, top_p, user, ...);
    # they are accepted and have no effect, as OpenAI-compatible servers commonly do.
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "model": "citeqa",
                    "messages": [
                        {"role": "user", "content": "How do random forests avoid overfitting?"}
                    ],
                }
            ]
        },
    )
    model: str = Field(description="A model from GET /v1/models, e.g. 'citeqa'.")
    messages: list[OpenAIMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, description="Only 1 is supported.")
    top_k: int | None = Field(None, description="citeqa extension: papers to consider.")


@router.get("/v1/models", summary="The models this server answers as (OpenAI format)")
def list_models(settings: SettingsDep) -> dict[str, Any]:
    created = 1_700_000_000
    return {
        "object": "list",
        "data": [
            {"id": mid, "object": "model", "created": created, "owned_by": OWNER}
            for mid in listed_models(settings)
        ],
    }


# Characters with a meaning in markdown or HTML that could make stored text (titles,
# abstract sentences) into markup, links or images in a client that renders the reply.
_MARKUP = re.compile(r"\[\d+\]|[\\`*_\[\]<>!|~]")
_MARKER_THEN_LINK = re.compile(r"(\[\d+\])([(\[:])")


def plain(text: str, *, markers: bool = False) -> str:
    """`text` with markdown and HTML neutralised by backslash escapes (CommonMark's own
    way to say "this character is literal"), so a renderer shows it as typed. With
    `markers`, citation markers [n] stay as they are but cannot start a link."""

    def escape(m: re.Match[str]) -> str:
        s = m.group(0)
        if len(s) > 1:  # [n]
            return s if markers else f"\\[{s[1:-1]}\\]"
        return "\\" + s

    out = _MARKUP.sub(escape, text)
    return _MARKER_THEN_LINK.sub(r"\1\\\2", out) if markers else out


def references(answer: Answer) -> str:
    """The answer, then one line per citation: plain text whatever the papers hold,
    links only as http(s) autolinks."""
    if not answer.citations:
        return plain(answer.answer, markers=True)
    lines = [plain(answer.answer, markers=True), "", "References:"]
    for c in answer.citations:
        url = web_url(c.url)
        where = f" <{url}>" if url else f" ({plain(c.paper_id)})"
        lines.append(f"[{c.n}] {plain(c.title)}.{where}")
    return "\n".join(lines)


def _usage(body: CompletionRequest, text: str) -> dict[str, int]:
    # Whitespace words, not tokens: citeqa may not run a tokenizer at all.
    prompt = sum(len(m.text().split()) for m in body.messages)
    completion = len(text.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _extra(answer: Answer) -> dict[str, Any]:
    return {
        "citations": [c.to_json() for c in answer.citations],
        "citeqa": {
            "refused": answer.refused,
            "nearest": answer.nearest,
            "degraded": answer.degraded,
            "degraded_reason": answer.degraded_reason,
            "generator": answer.generator,
            "verification": answer.verification,
        },
    }


@router.post(
    "/v1/chat/completions",
    summary="OpenAI-compatible chat completion with citations",
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def completions(
    body: CompletionRequest,
    request: Request,
    chain: ChainDep,
    settings: SettingsDep,
    metrics: MetricsDep,
):  # type: ignore[no-untyped-def]
    models = model_ids(settings)
    if body.model not in models:
        raise NotFound(
            f"The model '{body.model}' does not exist; GET /v1/models lists "
            f"{', '.join(listed_models(settings))}",
            param="model",
            code="model_not_found",
        )
    if body.n != 1:
        raise Invalid("only n=1 is supported", param="n")
    # The cap counts what was sent, system messages too, not what is kept of it.
    if len(body.messages) > settings.api.max_messages:
        raise Invalid(f"at most {settings.api.max_messages} messages per request", param="messages")
    turns = [(m.role, m.text()) for m in body.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1][0] != "user":
        raise Invalid("the last message must come from the user", param="messages")
    q = to_question(settings, turns=turns, top_k=body.top_k, filters=None, llm=models[body.model])
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if not body.stream:
        answer = await answer_unless_gone(request, chain, q)
        metrics.observe_answer(answer.timings, answer.refused, answer.degraded)
        text = references(answer)
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(body, text),
            **_extra(answer),
        }
    answer = await answer_unless_gone(request, chain, q)
    metrics.observe_answer(answer.timings, answer.refused, answer.degraded)
    return EventSourceResponse(_chunks(body, answer, cid, created), ping=10)


def _chunks(
    body: CompletionRequest, answer: Answer, cid: str, created: int
) -> Iterator[ServerSentEvent]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> ServerSentEvent:
        payload = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }
        return ServerSentEvent(json.dumps(payload, ensure_ascii=False))

    text = references(answer)
    yield chunk({"role": "assistant", "content": ""})
    for piece in _pieces(text):
        yield chunk({"content": piece})
    yield chunk({}, "stop", **_extra(answer))
    if body.stream_options and body.stream_options.include_usage:
        usage = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "choices": [],
            "usage": _usage(body, text),
        }
        yield ServerSentEvent(json.dumps(usage))
    yield ServerSentEvent("[DONE]")


def _pieces(text: str) -> Iterator[str]:
    """The text in sentence-sized pieces that concatenate back to exactly `text`."""
    for line in text.splitlines(keepends=True):
        cursor = 0
        for _, b in sentence_spans(line):
            if b > cursor:
                yield line[cursor:b]
                cursor = b
        if cursor < len(line):
            yield line[cursor:]
