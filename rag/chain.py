"""The question-answering pipeline: plain steps over one typed `State`.

    rewrite (follow-ups, with the chat history) -> retrieve (hybrid, gated)
      -> answerable (which retrieved papers answer: rag/answer/answerable.py)
         [with `reader.enabled`: a model reads the papers where the two steps
          above are unsure, within a time budget: rag/reader/consult.py]
      -> generate (a generator from the registry, streamed, given only those papers)
      -> finish (verify; when the cited papers take both sides of the question's point,
         a note that says so: rag/check/disagree.py) -> Answer

There is one pipeline, and it streams: `QAChain.stream(q)` yields `token` and
`reset` events as the draft is written, then the verified answer;
`QAChain.invoke(q)` drains it. `QAChain.runnable` is the same pipeline as a
LangChain runnable (its `stream` yields the events, its `invoke` returns the
Answer), so it composes with other runnables.

When retrieval finds nothing relevant the pipeline refuses without calling a
model. When the model is unreachable, fails, misses its deadline, or the caller
cancels, the fallback generator answers instead and the answer is marked
degraded; the model's work stops at its next token. Any other exception is a
bug and surfaces as one.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.runnables import Runnable, RunnableConfig

from rag.answer.answerable import answering_sources, intent, scored_sources
from rag.check.disagree import note, sides
from rag.check.guard import OutputGuard
from rag.check.support import SentenceEncoder
from rag.check.verify import verify
from rag.claims import ClaimModels
from rag.encode.embeddings import make_embeddings
from rag.generate import Generator, Generators, GeneratorUnavailable
from rag.index.store import Store, open_store
from rag.reader import Reader, make_reader
from rag.reader.consult import Consultation, Reads
from rag.retrieval.retrieve import Mode, Retrieval, Retriever, make_retriever
from rag.settings import Settings
from rag.text import terms
from rag.types import Answer, Filters, Source

REFUSAL = "The corpus does not cover this question."
NEAREST = 3  # papers a refusal near the corpus names


def near_refusal(titles: list[str]) -> str:
    """The refusal of a question near the corpus: it names the nearest papers, so a
    reader who asked in other words than the papers' can still find the one meant."""
    named = "; ".join(f"\u201c{t}\u201d" for t in titles)
    return f"{REFUSAL} The nearest papers, which may not answer it: {named}."


MODEL_REFUSAL = re.compile(r"^\W*the sources do not cover this", re.I)
_FOLLOW_UP = re.compile(
    r"\b(it|its|they|them|their|this|that|these|those|the paper|the method)\b", re.I
)
_POLL = 0.1  # seconds between looks at the caller's cancel flag


class AnswerCancelled(Exception):
    """The caller cancelled the answer (its client went away): nobody will read it,
    so no fallback is written either."""


@dataclass
class Question:
    question: str
    history: list[tuple[str, str]] = field(default_factory=list)
    """Earlier turns as (role, content), role 'user' or 'assistant'."""
    k: int | None = None
    filters: Filters | None = None
    llm: str | None = None
    mode: Mode = "hybrid"
    cancel: threading.Event | None = None
    """Set by the caller (a client that went away) to stop model work."""


# -- events ---------------------------------------------------------------------
#   {"type": "token", "text": str}   a piece of the draft (passed the output guard)
#   {"type": "reset"}                drop the draft so far: the fallback answer follows
#   {"type": "progress", "stage": "reader", "step": "gate"|"answerable",
#    "paper_id": str, "done": int, "of": int}   the reader starts on a paper
#   {"type": "answer", "answer": Answer}   the verified answer, always last
Event = dict[str, Any]


# -- state and steps -------------------------------------------------------------


@dataclass
class Draft:
    text: str
    generator: str
    from_model: bool
    degraded: bool = False
    reason: str | None = None


@dataclass
class State:
    q: Question
    t0: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    standalone: str = ""
    retrieval: Retrieval | None = None
    answering: list[Source] = field(default_factory=list)
    """The retrieved papers that answer the question: what generators may cite."""
    draft: Draft | None = None
    """None when the gate refused: no generator ran."""
    reads: Reads | None = None
    """The reader's reads for this answer (None: no reader consulted)."""


@dataclass
class Parts:
    """The collaborators the steps use."""

    retriever: Retriever
    encoder: SentenceEncoder
    generators: Generators
    guard: OutputGuard
    settings: Settings
    reader: Consultation | None = None
    claims: ClaimModels | None = None
    """The claim models that read the cited papers' sides (None: the shipped ones)."""


def heuristic_rewrite(history: list[tuple[str, str]], question: str) -> str:
    """A follow-up that leans on the conversation borrows the last question's words."""
    earlier = [c for r, c in history if r in ("user", "human")]
    if not earlier:
        return question
    if len(set(terms(question))) >= 4 and not _FOLLOW_UP.search(question):
        return question
    return f"{earlier[-1]} {question}"


def stream_with_deadline(
    produce: Callable[[threading.Event], Iterator[str]],
    seconds: float,
    cancel: threading.Event | None = None,
) -> Iterator[str]:
    """Pieces from `produce(stop)`, raising GeneratorUnavailable once `seconds` have
    passed or `cancel` is set.

    The producer runs in a thread so that a server that stalls mid-answer cannot
    hold the caller past the deadline; `stop` is set on the deadline, on cancel and
    when the consumer stops reading, and the producer ends at its next piece, so no
    abandoned answer keeps the model busy.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def run() -> None:
        try:
            for piece in produce(stop):
                if stop.is_set():
                    break
                q.put(("piece", piece))
            q.put(("end", None))
        except Exception as exc:  # reported to the consumer, who decides
            q.put(("error", exc))

    threading.Thread(target=run, daemon=True, name="llm-stream").start()
    deadline = time.monotonic() + seconds
    try:
        while True:
            if cancel is not None and cancel.is_set():
                raise GeneratorUnavailable("the request was cancelled")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GeneratorUnavailable(f"the model did not finish within {seconds:g}s")
            try:
                kind, value = q.get(timeout=min(remaining, _POLL))
            except queue.Empty:
                continue
            if kind == "piece":
                yield value
            elif kind == "end":
                return
            else:
                raise value  # GeneratorUnavailable degrades; anything else is a bug
    finally:
        stop.set()


def rewrite(parts: Parts, s: State) -> None:
    """The question made standalone: by the model when there is one, else by
    borrowing the previous question's words."""
    q = s.q
    t0 = time.perf_counter()
    s.standalone = q.question
    if q.history:
        s.standalone = heuristic_rewrite(q.history, q.question)
        try:
            gen = parts.generators.get(q.llm or parts.settings.llm)
            if gen.uses_model:
                text = next(
                    stream_with_deadline(
                        lambda stop: iter([gen.rewrite(q.history, q.question, stop) or ""]),
                        parts.settings.llm_timeout,
                        q.cancel,
                    ),
                    "",
                )
                # Keep the model's rewrite only if it is about this conversation.
                known = set(terms(q.question + " " + " ".join(c for _, c in q.history)))
                if 0 < len(text) < 400 and set(terms(text)) & known:
                    s.standalone = text
        except GeneratorUnavailable:
            pass
    s.timings["rewrite"] = time.perf_counter() - t0


def retrieve(parts: Parts, s: State) -> None:
    """The papers near the question. A question about a set of papers ("which
    papers ...") looks at more of them, since every one that answers is cited."""
    q = s.q
    t0 = time.perf_counter()
    k = q.k
    if k is None and intent(s.standalone) == "set":
        k = max(parts.settings.retrieval.k, parts.settings.retrieval.set_k)
    s.retrieval = parts.retriever.retrieve(
        s.standalone,
        k=k,
        filters=q.filters,
        mode=q.mode,
        dense_deadline_ms=parts.settings.retrieval.chat_dense_timeout_ms,
    )
    s.timings.update(s.retrieval.timings)
    s.timings["retrieve"] = time.perf_counter() - t0


def read_near_refusal(parts: Parts, s: State) -> Iterator[Event]:
    """A refusal near the gate's threshold: the reader reads the nearest papers, and
    those it says answer let the question through (they are what it may cite)."""
    retrieval, consult = s.retrieval, parts.reader
    assert retrieval is not None
    if consult is None or retrieval.relevant or not retrieval.sources:
        return
    if not consult.near_gate(retrieval.gate, parts.settings.retrieval.gate_threshold):
        return
    t0 = time.perf_counter()
    s.reads = s.reads or consult.new_reads()
    papers = retrieval.sources[:NEAREST]
    yield from consult.read(s.standalone, papers, s.reads, "gate", s.q.cancel)
    yes = [p for p in papers if consult.says_yes(s.reads, p.paper_id)]
    yes.sort(key=lambda p: s.reads.results[p.paper_id].p_answers, reverse=True)  # type: ignore[union-attr]
    if yes:
        if intent(s.standalone) != "set":
            yes = yes[:1]
        retrieval.relevant = True
        retrieval.gate = {**retrieval.gate, "passed": True, "near": False, "reader": True}
        s.answering = yes
        s.reads.changed.append("gate passed")
    s.timings["reader"] = s.timings.get("reader", 0.0) + time.perf_counter() - t0


def answerable(parts: Parts, s: State) -> Iterator[Event]:
    """Of the papers retrieved, the ones that answer (rag/answer/answerable.py): the only
    ones any generator is given, and so the only ones an answer can cite. With the
    reader on, a set question's papers the model is unsure of are read, and the
    reader decides those."""
    retrieval = s.retrieval
    assert retrieval is not None
    if not retrieval.relevant or s.answering:  # s.answering: the reader passed the gate
        return
    t0 = time.perf_counter()
    consult = parts.reader
    if consult is None or intent(s.standalone) != "set":
        s.answering = answering_sources(
            s.standalone, retrieval.sources, parts.encoder, retrieval.vector
        )
        s.timings["answerable"] = time.perf_counter() - t0
        return
    scored, threshold = scored_sources(
        s.standalone, retrieval.sources, parts.encoder, retrieval.vector
    )
    s.timings["answerable"] = time.perf_counter() - t0
    unsure = [src for src, p in scored if consult.unsure(p, threshold)]
    if unsure:
        t1 = time.perf_counter()
        s.reads = s.reads or consult.new_reads()
        yield from consult.read(s.standalone, unsure, s.reads, "answerable", s.q.cancel)
        s.timings["reader"] = s.timings.get("reader", 0.0) + time.perf_counter() - t1
    kept = []
    for src, p in scored:
        said = consult.says_yes(s.reads, src.paper_id) if s.reads else None
        keep = p >= threshold if said is None else said
        if said is not None and said != (p >= threshold):
            s.reads.changed.append(f"{'cited' if said else 'dropped'} {src.paper_id}")  # type: ignore[union-attr]
        if keep:
            kept.append(src)
    s.answering = (kept or [scored[0][0]]) if scored else []


def generate(parts: Parts, s: State) -> Iterator[str | None]:
    """Draft pieces; None means "discard what was streamed so far". Sets `s.draft`."""
    retrieval = s.retrieval
    assert retrieval is not None
    if not retrieval.relevant:
        return
    name = s.q.llm or parts.settings.llm
    t0 = time.perf_counter()
    pieces: list[str] = []
    try:
        try:
            gen: Generator = parts.generators.get(name)
            draft = Draft("", gen.name, gen.uses_model)
            if gen.uses_model:
                stream = stream_with_deadline(
                    lambda stop: gen.stream(s.standalone, s.answering, cancel=stop),
                    parts.settings.llm_timeout,
                    s.q.cancel,
                )
            else:
                stream = gen.stream(s.standalone, s.answering, query_vector=retrieval.vector)
            for piece in stream:
                pieces.append(piece)
                yield piece
        except GeneratorUnavailable as exc:
            if s.q.cancel is not None and s.q.cancel.is_set():
                raise AnswerCancelled(str(exc)) from exc
            yield None
            pieces.clear()
            fallback = parts.generators.fallback
            draft = Draft("", fallback.name, False, degraded=True, reason=str(exc))
            for piece in fallback.stream(s.standalone, s.answering, query_vector=retrieval.vector):
                pieces.append(piece)
                yield piece
        draft.text = "".join(pieces)
        s.draft = draft
    finally:
        s.timings["generate"] = time.perf_counter() - t0


def finish(parts: Parts, s: State) -> Answer:
    """The answer: the draft guarded and its citations verified, or the refusal."""
    q, retrieval, draft = s.q, s.retrieval, s.draft
    assert retrieval is not None
    base: dict[str, Any] = {
        "question": q.question,
        "standalone_question": s.standalone if s.standalone != q.question else None,
        "sources": [src.summary() for src in retrieval.sources],
        "gate": retrieval.gate,
    }
    # The dense search missed `chat_dense_timeout_ms`: retrieval saw BM25's candidates only.
    partial = f"retrieval: {retrieval.partial}" if retrieval.partial else None
    if s.reads is not None:
        base["reader"] = s.reads.summary()
        if s.reads.error:  # the reader was asked for and could not read: say so
            failed = f"reader: {s.reads.error}"
            partial = f"{partial}; {failed}" if partial else failed
    refused_by = None
    if draft is None:
        refused_by = "none"  # the gate: no model was called
    elif draft.from_model and MODEL_REFUSAL.match(draft.text):
        refused_by = draft.generator
    if refused_by is not None:
        s.timings["total"] = time.perf_counter() - s.t0
        # Near the corpus: the gate nearly passed it, or passed it and a model declined.
        near = retrieval.gate.get("near") or retrieval.gate.get("passed")
        nearest = retrieval.sources[:NEAREST] if near else []
        return Answer(
            answer=near_refusal([src.title or src.paper_id for src in nearest])
            if nearest
            else REFUSAL,
            nearest=[src.summary() for src in nearest],
            citations=[],
            refused=True,
            degraded=partial is not None,
            degraded_reason=partial,
            generator=refused_by,
            timings=s.timings,
            **base,
        )
    assert draft is not None
    t0 = time.perf_counter()
    safe, guarded = parts.guard.clean(draft.text)
    checked = verify(safe, s.answering, parts.encoder)
    if not checked.citations and draft.from_model:
        # The model wrote nothing the sources support: answer from the sources instead.
        fallback = parts.generators.fallback
        text = "".join(fallback.stream(s.standalone, s.answering, query_vector=retrieval.vector))
        checked = verify(text, s.answering, parts.encoder)
        reason = f"the {draft.generator} answer had no claim the sources support"
        draft = Draft(text, fallback.name, False, True, reason)
    checked.counts["guarded"] = guarded  # sentences the output guard removed
    s.timings["verify"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    disagreement = sides(s.standalone, checked.citations, s.answering, parts.encoder, parts.claims)
    if disagreement is not None:
        checked.text = f"{checked.text}\n\n{note(disagreement)}"
    s.timings["disagreement"] = time.perf_counter() - t1
    s.timings["total"] = time.perf_counter() - s.t0
    return Answer(
        answer=checked.text,
        citations=checked.citations,
        refused=False,
        degraded=draft.degraded or partial is not None,
        degraded_reason="; ".join(r for r in (draft.reason, partial) if r) or None,
        generator=draft.generator,
        verification=checked.counts,
        disagreement=disagreement,
        timings=s.timings,
        **base,
    )


# -- the pipeline ------------------------------------------------------------------


class QAChain:
    def __init__(
        self,
        retriever: Retriever,
        encoder: SentenceEncoder,
        settings: Settings,
        generators: Generators | None = None,
        reader: Reader | None = None,
    ) -> None:
        self.retriever = retriever
        self.encoder = encoder
        self.settings = settings
        self.generators = generators or Generators(settings, encoder)
        if reader is None and settings.reader.enabled:
            reader = make_reader(settings)  # a local model loads on its first read
        consult = None if reader is None else Consultation(reader, settings.reader)
        self.parts = Parts(
            retriever,
            encoder,
            self.generators,
            OutputGuard.from_settings(settings),
            settings,
            consult,
        )
        self.runnable = ChainRunnable(self)

    def stream(self, q: Question) -> Iterator[Event]:
        """`token` events of the draft (through the output guard, sentence by
        sentence), `reset` if the draft is abandoned for the fallback, then the
        `answer`, built from the raw draft, guarded and verified."""
        s = State(q)
        rewrite(self.parts, s)
        retrieve(self.parts, s)
        yield from read_near_refusal(self.parts, s)
        yield from answerable(self.parts, s)
        for piece in self.parts.guard.stream(generate(self.parts, s)):
            yield {"type": "reset"} if piece is None else {"type": "token", "text": piece}
        yield {"type": "answer", "answer": finish(self.parts, s)}

    def invoke(self, q: Question) -> Answer:
        *_, last = self.stream(q)
        answer: Answer = last["answer"]
        return answer


class ChainRunnable(Runnable[Question | str, Answer]):
    """The pipeline at LangChain's edge: `invoke` returns the Answer, `stream`
    yields the pipeline's events; a plain string is taken as a question."""

    def __init__(self, chain: QAChain) -> None:
        self.chain = chain

    @staticmethod
    def _question(value: Question | str) -> Question:
        return Question(value) if isinstance(value, str) else value

    def invoke(
        self, input: Question | str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Answer:
        return self.chain.invoke(self._question(input))

    def stream(  # type: ignore[override]
        self, input: Question | str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Event]:
        yield from self.chain.stream(self._question(input))


def build_chain(
    settings: Settings,
    *,
    store: Store | None = None,
    embeddings: Embeddings | None = None,
    generators: dict[str, Generator] | None = None,
    reader: Reader | None = None,
) -> QAChain:
    """The chain with collaborators from settings where none are given (the reader:
    only with `reader.enabled`, or when one is passed)."""
    store = store or open_store(settings)
    embeddings = embeddings or make_embeddings(settings)
    retriever = make_retriever(settings, store, embeddings)
    encoder = SentenceEncoder(embeddings)
    return QAChain(retriever, encoder, settings, Generators(settings, encoder, generators), reader)
