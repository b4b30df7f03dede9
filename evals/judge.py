"""Optional LLM judge: faithfulness and answer relevance, scored by an
OpenAI-compatible model. Imported only by `citeqa eval --judge`.

Faithfulness: the share of the answer's claims the cited passages support
(the judge is shown the answer and the quoted passages). Answer relevance:
how well the answer addresses the question. Both are 0..1; a reply the judge
botches (no number) counts as None and is left out of the mean.
"""

from __future__ import annotations

import re
from typing import Any

from langchain_openai import ChatOpenAI

FAITHFULNESS = """You check a cited answer against its sources.
Sources:
{sources}

Answer:
{answer}

What fraction of the answer's factual claims are supported by the sources? \
Reply with one number between 0 and 1, nothing else."""

RELEVANCE = """Question: {question}

Answer:
{answer}

How well does the answer address the question (1 = fully, 0 = not at all)? \
Reply with one number between 0 and 1, nothing else."""

_NUMBER = re.compile(r"(?<![\d.])(0(?:\.\d+)?|1(?:\.0+)?)(?!\d|\.\d|/)")


def parse_score(text: str) -> float | None:
    m = _NUMBER.search(text)
    return float(m.group(1)) if m else None


class Judge:
    def __init__(self, base_url: str, model: str, api_key: str | None, timeout: float = 60) -> None:
        self.llm = ChatOpenAI(
            model=model,
            base_url=base_url,
            api_key=api_key or "not-needed",  # type: ignore[arg-type]
            temperature=0,
            timeout=timeout,
            max_retries=1,
            max_tokens=8,  # type: ignore[call-arg]
        )

    def _ask(self, prompt: str) -> float | None:
        try:
            return parse_score(str(self.llm.invoke(prompt).content))
        except Exception:  # a judge outage costs the figure, not the eval
            return None

    def score(self, question: str, answer: str, quotes: list[str]) -> dict[str, Any]:
        if not quotes:
            faithfulness = None
        else:
            sources = "\n".join(f"[{i}] {q}" for i, q in enumerate(quotes, 1))
            faithfulness = self._ask(FAITHFULNESS.format(sources=sources, answer=answer))
        relevance = self._ask(RELEVANCE.format(question=question, answer=answer))
        return {"faithfulness": faithfulness, "answer_relevance": relevance}
