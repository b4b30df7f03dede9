"""The question-answering chain, as LangChain runnables:

    rewrite (follow-ups, with the chat history) -> retrieve (hybrid, gated)
      -> generate (extractive | openai | llamacpp) -> verify citations -> Answer

When retrieval finds nothing relevant the chain refuses without calling a
model. When the model is unreachable, fails or misses its deadline, the
extractive generator answers instead and the answer is marked degraded.
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
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough

from rag.embeddings import make_embeddings
from rag.generate import Generator, GeneratorUnavailable, make_generator
from rag.generate.extractive import ExtractiveGenerator
from rag.guard import OutputGuard
from rag.retrieve import Filters, Mode, Retrieval, Retriever, make_retriever
from rag.settings import Settings
from rag.store import Store, open_store
from rag.support import SentenceEncoder
from rag.text import sentence_spans, terms
from rag.types import Answer
from rag.verify import verify

REFUSAL = "The corpus does not cover this question."
MODEL_REFUSAL = re.compile(r"^\W*the sources do not cover this", re.I)
_FOLLOW_UP = re.compile(
    r"\b(it|its|they|them|their|this|that|these|those|the paper|the method)\b", re.I
)


@dataclass
class Question:
    question: str
    history: list[tuple[str, str]] = field(default_factory=list)
    """Earlier turns as (role, content), role 'user' or 'assistant'."""
    k: int | None = None
    filters: Filters | None = None
    llm: str | None = None
    mode: Mode = "hybrid"


@dataclass
class Draft:
    text: str
    generator: str
    degraded: bool = False
    reason: str | None = None


def heuristic_rewrite(history: list[tuple[str, str]], question: str) -> str:
    """A follow-up that leans on the conversation borrows the last question's words."""
    earlier = [c for r, c in history if r in ("user", "human")]
    if not earlier:
        return question
    if len(set(terms(question))) >= 4 and not _FOLLOW_UP.search(question):
        return question
    return f"{earlier[-1]} {question}"


def stream_with_deadline(produce: Callable[[], Iterator[str]], seconds: float) -> Iterator[str]:
    """Pieces from `produce`, raising GeneratorUnavailable once `seconds` have passed.

    The producer runs in a thread so that a server that stalls mid-answer
    cannot hold the caller past the deadline.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue()

    def run() -> None:
        try:
            for piece in produce():
                q.put(("piece", piece))
            q.put(("end", None))
        except Exception as exc:  # reported to the consumer, who decides
            q.put(("error", exc))

    threading.Thread(target=run, daemon=True, name="llm-stream").start()
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise GeneratorUnavailable(f"the model did not finish within {seconds:g}s")
        try:
            kind, value = q.get(timeout=remaining)
        except queue.Empty:
            raise GeneratorUnavailable(f"the model did not finish within {seconds:g}s") from None
        if kind == "piece":
            yield value
        elif kind == "end":
            return
        else:
            raise GeneratorUnavailable(f"the model failed: {_describe(value)}") from value


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{name}: {text}"[:300]


class QAChain:
    def __init__(
        self,
        retriever: Retriever,
        encoder: SentenceEncoder,
        settings: Settings,
        generators: dict[str, Generator] | None = None,
    ) -> None:
        self.retriever = retriever
        self.encoder = encoder
        self.settings = settings
        self._generators: dict[str, Generator] = dict(generators or {})
        self._lock = threading.Lock()
        self.extractive = ExtractiveGenerator(encoder)
        self.guard = OutputGuard.from_settings(settings)
        self.runnable: Runnable = (
            RunnablePassthrough.assign(standalone=RunnableLambda(self._rewrite))
            | RunnablePassthrough.assign(retrieval=RunnableLambda(self._retrieve))
            | RunnablePassthrough.assign(draft=RunnableLambda(self._generate))
            | RunnableLambda(self._finish)
        )

    def generator(self, name: str) -> Generator:
        if name == "extractive":
            return self.extractive
        with self._lock:
            if name not in self._generators:
                self._generators[name] = make_generator(name, self.settings, self.encoder)
            return self._generators[name]

    # -- the steps ----------------------------------------------------------------

    def _rewrite(self, state: dict[str, Any]) -> str:
        q: Question = state["q"]
        t0 = time.perf_counter()
        try:
            if not q.history:
                return q.question
            name = q.llm or self.settings.llm
            gen = self.generator(name) if name != "extractive" else None
            rewrite = getattr(gen, "rewrite", None)
            if rewrite is not None:
                try:
                    text = next(
                        stream_with_deadline(
                            lambda: iter([rewrite(q.history, q.question)]),
                            self.settings.llm_timeout,
                        ),
                        "",
                    )
                    # Keep the model's rewrite only if it is about this conversation.
                    known = set(terms(q.question + " " + " ".join(c for _, c in q.history)))
                    if 0 < len(text) < 400 and set(terms(text)) & known:
                        return text
                except GeneratorUnavailable:
                    pass
            return heuristic_rewrite(q.history, q.question)
        finally:
            state["timings"]["rewrite"] = time.perf_counter() - t0

    def _retrieve(self, state: dict[str, Any]) -> Retrieval:
        q: Question = state["q"]
        t0 = time.perf_counter()
        result = self.retriever.retrieve(state["standalone"], k=q.k, filters=q.filters, mode=q.mode)
        state["timings"].update(result.timings)
        state["timings"]["retrieve"] = time.perf_counter() - t0
        return result

    def _generate(self, state: dict[str, Any]) -> Draft | None:
        pieces: list[str] = []
        for piece in self._generate_stream(state):
            if piece is None:
                pieces.clear()
            else:
                pieces.append(piece)
        info = state.get("draft_info")
        return Draft("".join(pieces), **info) if info else None

    def _generate_stream(self, state: dict[str, Any]) -> Iterator[str | None]:
        """Draft text pieces; None means "discard what was streamed so far"."""
        q: Question = state["q"]
        retrieval: Retrieval = state["retrieval"]
        if not retrieval.relevant:
            state["draft_info"] = None
            return
        name = q.llm or self.settings.llm
        t0 = time.perf_counter()
        info: dict[str, Any] = {"generator": name}
        state["draft_info"] = info
        try:
            if name == "extractive":
                yield from self.extractive.stream(
                    state["standalone"], retrieval.sources, retrieval.vector
                )
            else:
                gen = self.generator(name)
                yield from stream_with_deadline(
                    lambda: gen.stream(state["standalone"], retrieval.sources),
                    self.settings.llm_timeout,
                )
        except (GeneratorUnavailable, RuntimeError, ImportError) as exc:
            yield None
            info.update(generator="extractive", degraded=True, reason=str(exc))
            yield from self.extractive.stream(
                state["standalone"], retrieval.sources, retrieval.vector
            )
        finally:
            state["timings"]["generate"] = time.perf_counter() - t0

    def _finish(self, state: dict[str, Any]) -> Answer:
        q: Question = state["q"]
        retrieval: Retrieval = state["retrieval"]
        draft: Draft | None = state["draft"]
        timings: dict[str, float] = state["timings"]
        base = {
            "question": q.question,
            "standalone_question": state["standalone"]
            if state["standalone"] != q.question
            else None,
            "sources": [s.summary() for s in retrieval.sources],
            "gate": retrieval.gate,
        }
        refused_by = None
        if draft is None:
            refused_by = "none"  # the gate: no model was called
        elif draft.generator != "extractive" and MODEL_REFUSAL.match(draft.text):
            refused_by = draft.generator
        if refused_by is not None:
            timings["total"] = time.perf_counter() - state["t0"]
            return Answer(
                answer=REFUSAL,
                citations=[],
                refused=True,
                generator=refused_by,
                timings=timings,
                **base,
            )
        assert draft is not None
        t0 = time.perf_counter()
        safe, guarded = self.guard.clean(draft.text)
        checked = verify(safe, retrieval.sources, self.encoder)
        if not checked.citations and draft.generator != "extractive":
            # The model wrote nothing the sources support: answer from the sources instead.
            text = self.extractive.answer(state["standalone"], retrieval.sources, retrieval.vector)
            checked = verify(text, retrieval.sources, self.encoder)
            draft = Draft(
                text,
                "extractive",
                True,
                f"the {draft.generator} answer had no claim the sources support",
            )
        checked.counts["guarded"] = guarded  # sentences the output guard removed
        timings["verify"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - state["t0"]
        return Answer(
            answer=checked.text,
            citations=checked.citations,
            refused=False,
            degraded=draft.degraded,
            degraded_reason=draft.reason,
            generator=draft.generator,
            verification=checked.counts,
            timings=timings,
            **base,
        )

    # -- warm-up --------------------------------------------------------------------

    def warm(self, limit: int, stop: threading.Event, batch: int = 16) -> int:
        """Embed abstract sentences ahead of questions (the extractive summary and the
        citation checks need them), up to `limit`, in small batches that leave the CPU
        to requests; returns how many. Stops early when `stop` is set."""
        done = 0
        offset = 0
        pending: list[str] = []
        while done < limit and not stop.is_set():
            page = self.retriever.store.papers(offset=offset, limit=100)
            if not page:
                break
            offset += len(page)
            for meta in page:
                abstract = str(meta.get("abstract") or "")
                pending += [abstract[a:b] for a, b in sentence_spans(abstract)]
                while len(pending) >= batch and done < limit and not stop.is_set():
                    take = min(batch, limit - done)
                    self.encoder.encode(pending[:take])
                    done += take
                    pending = pending[take:]
                    stop.wait(0.05)  # yield to requests between batches
        if pending and done < limit and not stop.is_set():
            self.encoder.encode(pending[: limit - done])
            done += min(len(pending), limit - done)
        return done

    # -- entry points -------------------------------------------------------------

    def _state(self, q: Question) -> dict[str, Any]:
        return {"q": q, "t0": time.perf_counter(), "timings": {}}

    def invoke(self, q: Question) -> Answer:
        return self.runnable.invoke(self._state(q))  # type: ignore[no-any-return]

    def stream(self, q: Question) -> Iterator[dict[str, Any]]:
        """Events: {"type": "token", "text"}, {"type": "reset"} (drop the streamed
        draft: the model failed and the fallback answer follows), then
        {"type": "answer", "answer": Answer} with the verified text and citations."""
        state = self._state(q)
        state["standalone"] = self._rewrite(state)
        state["retrieval"] = self._retrieve(state)
        pieces: list[str] = []

        def raw() -> Iterator[str | None]:
            for piece in self._generate_stream(state):
                if piece is None:
                    pieces.clear()
                else:
                    pieces.append(piece)
                yield piece

        # What streams out passes the output guard sentence by sentence; the
        # final answer is built from the raw draft, guarded and verified.
        for piece in self.guard.stream(raw()):
            yield {"type": "reset"} if piece is None else {"type": "token", "text": piece}
        info = state.get("draft_info")
        state["draft"] = Draft("".join(pieces), **info) if info else None
        yield {"type": "answer", "answer": self._finish(state)}


def build_chain(
    settings: Settings,
    *,
    store: Store | None = None,
    embeddings: Embeddings | None = None,
    generators: dict[str, Generator] | None = None,
) -> QAChain:
    """The chain with collaborators from settings where none are given."""
    store = store or open_store(settings)
    embeddings = embeddings or make_embeddings(settings)
    retriever = make_retriever(settings, store, embeddings)
    return QAChain(retriever, SentenceEncoder(embeddings), settings, generators)
