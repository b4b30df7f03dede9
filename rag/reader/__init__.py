"""Readers: a model reads one paper against one question.

A reader answers "does this paper answer the question?" with a probability
and the paper's sentence that does: `read(question, paper) -> ReadResult`.
The chain asks it only where the encoder's signals are unsure (rag/chain.py:
refusals near the gate's threshold, set-question papers near the
answerability threshold), within a time budget per answer; `evals.teach` runs
it offline to label pairs for the fast path's fitted models.

`llamacpp` runs a local GGUF in-process (the Qwen files that
`python -m rag.reader.models fetch` assembles, or any other); `openai` asks
any OpenAI-compatible chat server (llama.cpp's among them). A new reader is
one module with a class that meets `Reader`, plus one line in `READERS`.
"""

from __future__ import annotations

import importlib
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from rag.text import sentence_spans
from rag.types import Source

if TYPE_CHECKING:
    from rag.settings import Settings

READERS: dict[str, str] = {
    "llamacpp": "rag.reader.llamacpp:LlamaCppReader",
    "openai": "rag.reader.openai:OpenAIReader",
}
ReaderName = Literal[tuple(READERS)]  # type: ignore[valid-type]

LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
"""Sentence labels in the prompt: one token each in the models' vocabularies, so the
supporting sentence is read from one next-token distribution."""
MAX_ABSTRACT_CHARS = 4000
"""Longer abstracts are cut (at a sentence) to keep a read within the context and
its budget."""


class UnknownReader(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown reader '{name}' (one of: {', '.join(READERS)})")
        self.name = name


class ReaderUnavailable(RuntimeError):
    """The reader's model cannot be loaded or reached, or failed. Readers raise this
    (and `ReaderTimeout`) for their model's errors; anything else is a bug."""


class ReaderTimeout(ReaderUnavailable):
    """The read did not finish by its deadline, or was cancelled."""


@dataclass(frozen=True)
class Sentence:
    label: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class ReadResult:
    p_answers: float
    """The model's probability that the paper answers the question, P(Yes) over
    P(Yes) + P(No): raw, not calibrated."""
    sentence: Sentence | None
    """The paper's sentence that answers it (`abstract[start:end]`), when the reader
    could say which."""
    reader: str
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)
    """How the probability was read (`logprobs`, `constrained`, ...)."""


def sentences(abstract: str) -> list[Sentence]:
    """The abstract's sentences, labelled A, B, ...: the first `len(LABELS)` that
    fit in `MAX_ABSTRACT_CHARS` (later ones are left out of the prompt)."""
    out: list[Sentence] = []
    for a, b in sentence_spans(abstract):
        if len(out) == len(LABELS) or (out and b > MAX_ABSTRACT_CHARS):
            break
        out.append(Sentence(LABELS[len(out)], a, b, abstract[a:b]))
    return out


SYSTEM = (
    "You judge whether a research paper's abstract answers a reader's question. "
    "The reader may use other words than the paper. Reply with Yes or No first; "
    "after Yes, give the letter of the sentence that answers, as in 'Yes, sentence C'."
)


def messages(question: str, paper: Source, labelled: list[Sentence]) -> list[dict[str, str]]:
    """The prompt: the paper first (so that reads of one paper share a prefix), then
    the question. The paper's text is data, not instructions."""
    body = "\n".join(f"({s.label}) {s.text}" for s in labelled)
    user = (
        f"Paper title: {paper.title}\nAbstract, sentence by sentence:\n{body}\n\n"
        f"Question: {question}\n"
        "Does this paper answer the question? Reply Yes or No."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


YES = ("yes",)
NO = ("no",)
_WORD = re.compile(r"[A-Za-z]+")


def yes_no(token: str) -> str | None:
    """'yes' / 'no' for a token that starts such an answer ('Yes', ' yes', 'NO')."""
    m = _WORD.search(token)
    if not m:
        return None
    w = m.group(0).lower()
    return "yes" if w in YES else "no" if w in NO else None


_LABEL_IN_TEXT = re.compile(r"\bsentences?\s*\(?([A-Z])\b|\(([A-Z])\)")


def label_in(text: str, labelled: list[Sentence]) -> Sentence | None:
    """The sentence a reply names ('Yes, sentence C', 'Yes (C)')."""
    by_label = {s.label: s for s in labelled}
    for m in _LABEL_IN_TEXT.finditer(text):
        label = m.group(1) or m.group(2)
        if label in by_label:
            return by_label[label]
    return None


class Reader(Protocol):
    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None: ...

    def read(
        self,
        question: str,
        paper: Source,
        *,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> ReadResult:
        """Does `paper` answer `question`? Raises ReaderTimeout past `deadline`
        (a `time.monotonic()` value) or once `cancel` is set, ReaderUnavailable
        when its model cannot answer."""
        ...

    @classmethod
    def check(cls, settings: Settings, timeout: float) -> dict[str, Any]:
        """Can it read now? Cheap: `ok`, and a `reason` when not."""
        ...


def reader_names() -> tuple[str, ...]:
    return tuple(READERS)


def reader_class(name: str) -> type[Reader]:
    try:
        module, _, attr = READERS[name].partition(":")
    except KeyError:
        raise UnknownReader(name) from None
    cls: type[Reader] = getattr(importlib.import_module(module), attr)
    return cls


def make_reader(settings: Settings, name: str | None = None) -> Reader:
    return reader_class(name or settings.reader.backend)(settings)


def check_reader(settings: Settings, timeout: float = 3.0) -> dict[str, Any]:
    name = settings.reader.backend
    try:
        cls = reader_class(name)
    except (UnknownReader, ImportError) as exc:
        return {"ok": False, "reader": name, "reason": str(exc)}
    return {"reader": name, **cls.check(settings, timeout)}


def remaining(deadline: float | None, cancel: threading.Event | None = None) -> float | None:
    """Seconds left before `deadline` (None: no deadline); raises ReaderTimeout when
    none are left or `cancel` is set."""
    if cancel is not None and cancel.is_set():
        raise ReaderTimeout("the read was cancelled")
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise ReaderTimeout("the read did not finish within its budget")
    return left
