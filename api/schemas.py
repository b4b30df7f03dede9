"""Request and response bodies shared by the chat routes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rag.generate import GeneratorName
from rag.types import Filters


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FiltersIn(Strict):
    year_min: int | None = Field(None, ge=0, le=3000, description="Earliest publication year.")
    year_max: int | None = Field(None, ge=0, le=3000, description="Latest publication year.")
    paper_ids: list[str] = Field(
        default_factory=list, max_length=1000, description="Only these papers."
    )
    categories: list[str] = Field(
        default_factory=list, max_length=100, description="Papers in any of these categories."
    )

    def to_filters(self) -> Filters:
        return Filters(
            year_min=self.year_min,
            year_max=self.year_max,
            paper_ids=tuple(self.paper_ids),
            categories=tuple(self.categories),
        )


class Message(Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"question": "How do diffusion models generalize instead of memorizing?"},
                {
                    "messages": [
                        {"role": "user", "content": "Which papers reconstruct indoor scenes?"},
                        {"role": "assistant", "content": "HelixSurf ... [1]"},
                        {"role": "user", "content": "How fast is it?"},
                    ],
                    "top_k": 5,
                    "stream": True,
                },
            ]
        },
    )

    question: str | None = Field(None, description="A single question.")
    messages: list[Message] | None = Field(
        None, description="A conversation; the last message is the user's question."
    )
    top_k: int | None = Field(None, description="Papers to consider (default from settings).")
    filters: FiltersIn | None = None
    llm: GeneratorName | None = Field(  # type: ignore[valid-type]
        None,
        description="Generator for this request (default CITEQA_LLM); the server decides "
        "which it allows (CITEQA_LLM_ALLOWED), others are refused with 403.",
    )
    stream: bool = Field(False, description="Answer as server-sent events.")

    @model_validator(mode="after")
    def _one_of(self) -> ChatRequest:
        if (self.question is None) == (self.messages is None):
            raise ValueError("give exactly one of 'question' and 'messages'")
        if self.messages is not None:
            if not self.messages or self.messages[-1].role != "user":
                raise ValueError("the last message must be the user's question")
        return self
