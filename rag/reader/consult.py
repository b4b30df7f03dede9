"""The reader in an answer: which papers it reads, within what budget, and what
it changes.

The encoder's decisions stand wherever they are clear. The reader is asked
only where they are not:

- the gate refused, but within `reader.gate_margin` of its threshold: the
  nearest papers are read, and a paper the reader says answers lets the
  question through, citing that paper (one for a single-paper question, every
  such paper for a set question);
- a set question ("which papers ...") passed: each retrieved paper whose
  answerability probability is within `reader.answerable_margin` of the
  model's threshold is read, and the reader decides whether it is cited.

All reads of one answer share `reader.budget_seconds` and `reader.max_reads`;
papers left unread keep the encoder's decision and the answer says the reader
was cut short. A reader that fails (its model missing, its server down) stops
reading for that answer, which keeps the encoder's decisions and says why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rag.reader import Reader, ReaderTimeout, ReaderUnavailable, ReadResult
from rag.settings import ReaderSettings
from rag.types import Source


@dataclass
class Reads:
    """One answer's reads: results by paper id, and how reading went."""

    budget_seconds: float
    max_reads: int
    results: dict[str, ReadResult] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    cut_short: str | None = None
    error: str | None = None
    started: float | None = None
    changed: list[str] = field(default_factory=list)
    """What the reads changed ('gate passed', 'cited p', 'dropped p')."""

    @property
    def deadline(self) -> float:
        if self.started is None:
            self.started = time.monotonic()
        return self.started + self.budget_seconds

    def summary(self) -> dict[str, Any]:
        spent = 0.0 if self.started is None else time.monotonic() - self.started
        return {
            "reads": self.log,
            "cut_short": self.cut_short,
            "error": self.error,
            "changed": self.changed,
            "seconds": round(spent, 3),
        }


class Consultation:
    """The reader and its settings, as the chain's steps use them."""

    def __init__(self, reader: Reader, settings: ReaderSettings) -> None:
        self.reader = reader
        self.settings = settings

    def new_reads(self) -> Reads:
        return Reads(self.settings.budget_seconds, self.settings.max_reads)

    def read(
        self,
        question: str,
        papers: list[Source],
        reads: Reads,
        stage: str,
        cancel: threading.Event | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Reads each paper not read yet, yielding a progress event before each; stops
        at the budget, the read limit, a cancel, or the reader's first failure."""
        todo = [p for p in papers if p.paper_id not in reads.results]
        for i, paper in enumerate(todo):
            if reads.error or reads.cut_short:
                return
            if len(reads.log) >= reads.max_reads:
                reads.cut_short = f"{reads.max_reads} reads (reader.max_reads) done"
                return
            yield {
                "type": "progress",
                "stage": "reader",
                "step": stage,
                "paper_id": paper.paper_id,
                "done": i,
                "of": len(todo),
            }
            try:
                result = self.reader.read(question, paper, deadline=reads.deadline, cancel=cancel)
            except ReaderTimeout as exc:
                reads.cut_short = f"{exc} ({reads.budget_seconds:g}s, reader.budget_seconds)"
                return
            except ReaderUnavailable as exc:
                reads.error = str(exc)
                return
            reads.results[paper.paper_id] = result
            s = result.sentence
            reads.log.append(
                {
                    "step": stage,
                    "paper_id": paper.paper_id,
                    "p_answers": round(result.p_answers, 4),
                    "answers": result.p_answers >= self.settings.threshold,
                    "sentence": None if s is None else {"start": s.start, "end": s.end},
                    "seconds": round(result.seconds, 3),
                }
            )

    def says_yes(self, reads: Reads, paper_id: str) -> bool | None:
        """The reader's decision on a paper, None when it was not read."""
        r = reads.results.get(paper_id)
        return None if r is None else r.p_answers >= self.settings.threshold

    def near_gate(self, gate: dict[str, Any], threshold: float) -> bool:
        score = gate.get("score")
        return (
            not gate.get("passed")
            and score is not None
            and score >= threshold - self.settings.gate_margin
        )

    def unsure(self, prob: float, threshold: float) -> bool:
        return abs(prob - threshold) <= self.settings.answerable_margin
