"""The OpenAI-compatible reader (rag/reader/openai.py) against llama.cpp's own
server (`python -m llama_cpp.server`) with SmolLM2-135M: properties only (a
probability, a sentence of the paper, a clear error for an outage and a missed
deadline)."""

from __future__ import annotations

import time

import pytest

from rag.reader import ReaderTimeout, ReaderUnavailable, make_reader
from rag.settings import Settings
from tests.helpers import free_port
from tests.test_reader import QUESTION, assert_read


@pytest.fixture(scope="module")
def paper(sample_retriever):  # type: ignore[no-untyped-def]
    return sample_retriever.retrieve(QUESTION).sources[0]


def server_settings(url: str, **reader: object) -> Settings:
    return Settings(
        reader={"backend": "openai", "base_url": url, "openai_model": "smollm2", **reader}  # type: ignore[arg-type]
    )


@pytest.mark.slow
def test_openai_reader_reads_logprobs_from_a_real_server(llama_server, paper) -> None:
    reader = make_reader(server_settings(llama_server))
    result = reader.read(QUESTION, paper)
    assert_read(result, paper)
    assert result.detail["method"] in ("logprobs", "constrained")


@pytest.mark.slow
def test_openai_reader_without_logprobs_takes_the_reply_or_says_why(llama_server, paper) -> None:
    reader = make_reader(server_settings(llama_server, logprobs=False))
    try:
        result = reader.read(QUESTION, paper)
    except ReaderUnavailable as exc:  # a tiny model may answer neither Yes nor No
        assert "neither Yes nor No" in str(exc)
    else:
        assert result.p_answers in (0.05, 0.95) and result.detail["method"] == "constrained"
        assert_read(result, paper)


@pytest.mark.slow
def test_openai_reader_outage_and_deadline_are_clear(llama_server, paper) -> None:
    down = make_reader(server_settings(f"http://127.0.0.1:{free_port()}/v1"))
    with pytest.raises(ReaderUnavailable, match="the reader's server failed: APIConnectionError"):
        down.read(QUESTION, paper)
    reader = make_reader(server_settings(llama_server))
    with pytest.raises(ReaderTimeout):
        reader.read(QUESTION, paper, deadline=time.monotonic() - 1)
