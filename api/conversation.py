"""From a validated chat request to the chain's `Question`, with the limits applied."""

from __future__ import annotations

from api.errors import ApiError
from rag.chain import Question
from rag.retrieve import Filters
from rag.settings import Settings


class Invalid(ApiError):
    status = 422
    code = "invalid_value"


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
    history = [(r, c) for r, c in turns[:-1] if r in ("user", "assistant")]
    return Question(question, history=history, k=top_k, filters=filters, llm=llm)
