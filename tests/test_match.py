"""The gate's reading of a question against papers, word by word (rag/answer/match.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from rag.answer.match import Matcher
from rag.encode.embeddings import LocalEmbeddings, local_model_path
from rag.types import Source

QUESTION = "How does knowledge distillation improve small object detectors?"


def _paper(pid: str, title: str, abstract: str) -> Source:
    return Source(1, pid, title, abstract, None, 0.0, 0.0)


BOTH = _paper(
    "both",
    "Distilling detectors",
    "We transfer knowledge from a large teacher detector into a compact student. "
    "Distillation raises the accuracy of small object detectors by four points.",
)
DISTILLATION = _paper(
    "distillation",
    "Compressing language models",
    "We study knowledge distillation of language models. A distilled student keeps "
    "most of its teacher's perplexity.",
)
DETECTION = _paper(
    "detection",
    "Aerial imagery",
    "Small object detection in aerial images is hard. We propose a new feature pyramid "
    "for tiny vehicles.",
)


def test_one_paper_that_says_the_whole_question_covers_it_more_than_two_halves(
    embeddings,
) -> None:
    m = Matcher(embeddings)  # type: ignore[arg-type]
    whole = m.coverage(QUESTION, [BOTH])
    halves = m.coverage(QUESTION, [DISTILLATION, DETECTION])
    assert whole > halves
    # A set question's parts may be said by different papers: read together they cover
    # more than either alone, and adding a paper never lowers the reading.
    together = m.coverage(QUESTION, [DISTILLATION, DETECTION], union=True)
    assert together > halves
    assert m.coverage(QUESTION, [DISTILLATION, DETECTION, BOTH], union=True) >= together
    assert 0.0 < halves < whole <= 1.0
    assert m.coverage("", [BOTH]) == 0.0 and m.coverage(QUESTION, []) == 0.0


def test_stopwords_and_punctuation_of_the_question_are_not_matched(embeddings) -> None:
    m = Matcher(embeddings)  # type: ignore[arg-type]
    # "How does ... ?" leaves four content words; "distillation" may be several pieces.
    pieces = m.question(QUESTION)
    assert 5 <= len(pieces) <= 10
    assert np.allclose(np.linalg.norm(pieces, axis=1), 1.0, atol=1e-4)


def test_a_papers_tokens_are_kept_and_a_changed_abstract_is_read_again(embeddings) -> None:
    calls: list[int] = []

    class Counting:
        def tokens(self, texts):  # type: ignore[no-untyped-def]
            calls.append(len(texts))
            return embeddings.tokens(texts)

    m = Matcher(Counting(), papers=2)  # type: ignore[arg-type]
    m.paper_tokens([BOTH, DETECTION])
    m.paper_tokens([BOTH, DETECTION])
    assert len(calls) == 1  # both from the cache the second time
    changed = _paper("both", BOTH.title, BOTH.abstract + " It also runs faster.")
    m.paper_tokens([changed])
    assert len(calls) == 2 and len(m._cache) == 2  # read again; the oldest dropped


def test_the_onnx_and_torch_paths_give_the_same_tokens(embeddings) -> None:
    texts = [QUESTION, BOTH.abstract]
    fast = embeddings.tokens(texts)
    torch_path = LocalEmbeddings(local_model_path()).tokens(texts)
    for a, b in zip(fast, torch_path, strict=True):
        assert a.words == b.words
        assert float((a.vectors * b.vectors).sum(axis=1).min()) > 0.999


@contextmanager
def forward_passes(embeddings) -> Iterator[list[list[str]]]:  # type: ignore[no-untyped-def]
    """The texts of each forward pass the local model runs meanwhile."""
    fast = embeddings._fast()
    assert fast is not None
    seen: list[list[str]] = []
    real = fast._passes

    def counting(texts, batch_size):  # type: ignore[no-untyped-def]
        seen.append(list(texts))
        yield from real(texts, batch_size)

    fast._passes = counting
    try:
        yield seen
    finally:
        del fast._passes


def test_a_querys_tokens_come_from_its_own_embedding_pass(embeddings) -> None:
    question = "Which features do networks learn first during training?"
    with forward_passes(embeddings) as seen:
        vector = embeddings.embed_query(question)
        (toks,) = embeddings.tokens([question])
    passes = [len(texts) for texts in seen]
    assert passes == [1]  # one forward pass for the vector and the gate's tokens
    assert np.allclose(vector, embeddings._fast().encode([question])[0], atol=1e-5)
    assert toks.vectors.shape[0] >= len(question.split())


def test_warm_up_reads_the_stores_papers_so_questions_read_none(
    sample_settings, sample_store, embeddings
) -> None:
    import threading

    from rag.index.lexical import open_lexical
    from rag.retrieval.retrieve import Retriever
    from rag.warmup import warm_matcher

    m = Matcher(embeddings, papers=1000)  # type: ignore[arg-type]
    n = warm_matcher(sample_store, m, threading.Event())
    assert n == len(m._cache) > 50
    read: list[int] = []

    class Counting:
        def tokens(self, texts):  # type: ignore[no-untyped-def]
            read.append(len(texts))
            return embeddings.tokens(texts)

    m._encoder = Counting()  # type: ignore[assignment]
    retriever = Retriever(
        sample_store,
        embeddings,
        open_lexical(sample_store, sample_settings),
        sample_settings.retrieval,
        matcher=m,
    )
    got = retriever.retrieve("Why do neural networks prefer simple functions?")
    assert got.relevant and read == [1]  # the question's words; every paper was kept
    small = Matcher(embeddings, papers=10)  # type: ignore[arg-type]
    assert warm_matcher(sample_store, small, threading.Event()) == 10
    stopped = threading.Event()
    stopped.set()
    assert warm_matcher(sample_store, Matcher(embeddings), stopped) == 0  # type: ignore[arg-type]


def test_a_set_questions_topic_runs_through_the_model_once(sample_chain, embeddings) -> None:
    from rag.answer.answerable import topic
    from rag.chain import Question

    question = "Which papers study how networks memorize noisy labels?"
    with forward_passes(embeddings) as asked:
        answer = sample_chain.invoke(Question(question))
    assert not answer.refused
    # The gate reads the topic's tokens and the answerability step embeds it: one pass.
    assert sum(texts == [topic(question)] for texts in asked) == 1
    assert sum(texts == [question] for texts in asked) == 1


def test_the_gates_pass_over_a_paper_gives_the_answerability_step_its_sentence_vectors(
    embeddings,
) -> None:
    from rag.answer.answerable import read_sentences
    from rag.check.support import SentenceEncoder

    paper = _paper(
        "oat-bran",
        "Oat bran and cholesterol",
        "We randomised 120 adults with high cholesterol to oat bran or wheat bran for 12 weeks. "
        "Oat bran lowered LDL cholesterol by eight percent against wheat bran. "
        "Adherence was similar in both groups and no serious adverse events occurred. "
        "Soluble fibre from oats is a simple way to lower cholesterol in adults.",
    )
    question = "Does oat bran lower LDL cholesterol in adults?"
    with forward_passes(embeddings) as seen:
        Matcher(embeddings).paper_tokens([paper])  # the gate reads the paper
        gate = len(seen)
        reading = read_sentences(question, [paper], SentenceEncoder(embeddings))
    after = {t for texts in seen[gate:] for t in texts}
    read = [s.text for s in reading.sentences]
    # Every sentence the gate ran through the model is not run again; the first one,
    # which the gate read with the title before it, is.
    first = paper.abstract[: paper.abstract.index(".") + 1]
    assert len(read) == 4 and first in read
    assert after - {question} == {first}
    fresh = embeddings._fast().encode(read)
    assert np.allclose(reading.vectors, fresh, atol=1e-4)  # the same vectors, in order


def test_without_reuse_the_answerability_step_runs_the_sentences_again(embeddings) -> None:
    # The baseline of `python -m evals.bench.cold`.
    from rag.answer.answerable import read_sentences
    from rag.check.support import SentenceEncoder

    paper = _paper(
        "walking",
        "Walking and blood pressure",
        "We followed 300 older adults who walked thirty minutes a day for a year. "
        "Systolic blood pressure fell by six millimetres of mercury in the walking group. "
        "Falls and injuries were rare and did not differ between the two groups.",
    )
    embeddings.reuse_sentences = False
    try:
        with forward_passes(embeddings) as seen:
            Matcher(embeddings).paper_tokens([paper])
            gate = len(seen)
            read_sentences(
                "Does walking lower blood pressure?", [paper], SentenceEncoder(embeddings)
            )
    finally:
        embeddings.reuse_sentences = True
    after = {t for texts in seen[gate:] for t in texts}
    assert (
        "Systolic blood pressure fell by six millimetres of mercury in the walking group." in after
    )
