"""A local GGUF reads the paper in-process (llama-cpp-python, the `local` extra).

P(answers) is P(Yes) / (P(Yes) + P(No)) from the next-token logits after the
prompt; the supporting sentence is then the most likely label after
"Yes, sentence (". No text is generated. The prompt puts the paper before the
question, so reads of one paper after another question reuse the paper's
evaluated prefix (the teacher orders its pairs by paper for this). Prompt
tokens are evaluated in batches with a look at the deadline between two, so a
read past its budget stops within one batch. One read at a time per process.
"""

from __future__ import annotations

import atexit
import importlib.util
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.reader import (
    LABELS,
    ReaderUnavailable,
    ReadResult,
    messages,
    remaining,
    sentences,
    yes_no,
)
from rag.settings import Settings
from rag.types import Source

_lock = threading.Lock()
_POLL = 0.05
BATCH = 64  # prompt tokens per evaluation step: the deadline is looked at between steps
_SENTENCE_CUE = ", sentence ("  # after the Yes token: the next token is the label


def model_file(settings: Settings) -> Path:
    """The GGUF the reader opens: a model name's assembled file, or a path."""
    from rag.reader.models import MODELS, model_path

    name = settings.reader.model
    if name in MODELS:
        return model_path(name, settings.data_dir)
    return Path(name)


def missing_reason(path: Path, model: str) -> str | None:
    from rag.reader.models import MODELS

    if path.is_file():
        return None
    if model in MODELS:
        return (
            f"the reader model file {path} is missing: run `make reader-model` "
            f"(python -m rag.reader.models fetch {model})"
        )
    return f"the reader model file {path} is missing"


_params_lock = threading.Lock()


@contextmanager
def _weight_buffers(repack: bool) -> Iterator[None]:
    """Models loaded inside use llama.cpp's extra weight buffers (repacked weights,
    AMX tiles) only if `repack`. llama-cpp-python's `Llama` has no argument for
    `use_extra_bufts`, so its default model parameters are wrapped while it loads.
    Off by default: a native build on a CPU with AMX (this machine's) crashes in
    `ggml_backend_amx_mul_mat` on the first decode."""
    import llama_cpp.llama_cpp as low

    if repack:
        yield
        return
    with _params_lock:
        default = low.llama_model_default_params

        def without_extra_buffers() -> Any:
            params = default()
            params.use_extra_bufts = False
            return params

        low.llama_model_default_params = without_extra_buffers
        try:
            yield
        finally:
            low.llama_model_default_params = default


class _Model:
    """A loaded GGUF with what reading needs: the chat template, the Yes/No and
    label token ids."""

    def __init__(self, path: str, n_ctx: int, threads: int | None, repack: bool) -> None:
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            raise ReaderUnavailable(
                "llama-cpp-python is not installed: pip install 'citeqa[local]'"
            ) from exc
        try:
            with _weight_buffers(repack):
                self.llm = Llama(
                    model_path=path,
                    n_ctx=n_ctx,
                    n_batch=BATCH,
                    n_threads=threads,
                    n_threads_batch=threads,  # the prompt's threads: most of a read
                    verbose=False,
                )
        except (ValueError, OSError, RuntimeError) as exc:
            raise ReaderUnavailable(f"cannot load the GGUF model {path}: {exc}") from exc
        # Freed before the interpreter tears down llama_cpp's module globals: freed from
        # Llama.__del__ at exit instead, it raises "'NoneType' object is not callable".
        atexit.register(self.llm.close)
        llm = self.llm
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ReaderUnavailable(f"the GGUF model {path} has no chat template")

        def text_of(tok: int) -> str:
            return "" if tok < 0 else llm.detokenize([tok], special=True).decode(errors="ignore")

        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=text_of(llm.token_eos()),
            bos_token=text_of(llm.token_bos()),
        )
        self.yes: set[int] = set()
        self.no: set[int] = set()
        for word in ("Yes", " Yes", "yes", " yes", "YES", "No", " No", "no", " no", "NO"):
            toks = self.tokenize(word)
            answer = yes_no(word)
            if len(toks) == 1 and answer == yes_no(text_of(toks[0])):
                (self.yes if answer == "yes" else self.no).add(toks[0])
        if not self.yes or not self.no:
            raise ReaderUnavailable(f"the GGUF model {path} has no single Yes/No tokens")
        self.labels: dict[str, int] = {}
        for label in LABELS:
            toks = self.tokenize(label)
            if len(toks) == 1:
                self.labels[label] = toks[0]
        self.cue = self.tokenize(_SENTENCE_CUE)
        self.n_ctx = n_ctx

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        return list(self.llm.tokenize(text.encode(), add_bos=False, special=special))

    def prompt_tokens(self, msgs: list[dict[str, str]]) -> list[int]:
        prompt = self.formatter(messages=msgs).prompt  # type: ignore[arg-type]
        return self.tokenize(prompt, special=True)

    def logits(self) -> np.ndarray:
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.llm.n_vocab(),)).astype(np.float64)

    def feed(
        self, tokens: list[int], deadline: float | None, cancel: threading.Event | None
    ) -> int:
        """Evaluate `tokens` after the longest prefix already evaluated; returns how many
        were evaluated anew. Checks the deadline between batches."""
        llm = self.llm
        have = llm.input_ids[: llm.n_tokens]
        same = 0
        for a, b in zip(have, tokens, strict=False):
            if a != b:
                break
            same += 1
        same = min(same, len(tokens) - 1)  # the last token is evaluated again for its logits
        llm.n_tokens = same
        todo = tokens[same:]
        for i in range(0, len(todo), BATCH):
            remaining(deadline, cancel)  # what was evaluated stays valid for the next read
            llm.eval(todo[i : i + BATCH])
        return len(todo)


@lru_cache(maxsize=2)
def load_model(path: str, n_ctx: int, threads: int | None, repack: bool) -> _Model:
    """The GGUF at `path`, loaded once per process for these parameters (readers and
    `evals.write_questions` share it)."""
    return _Model(path, n_ctx, threads, repack)


class LlamaCppReader:
    name: ClassVar[str] = "llamacpp"

    def __init__(self, settings: Settings) -> None:
        self.path = model_file(settings)
        self.model_name = settings.reader.model
        self.n_ctx = settings.reader.n_ctx
        self.threads = settings.reader.threads
        self.repack = settings.reader.repack

    def _model(self) -> _Model:
        reason = missing_reason(self.path, self.model_name)
        if reason:
            raise ReaderUnavailable(reason)
        return load_model(str(self.path), self.n_ctx, self.threads, self.repack)

    def read(
        self,
        question: str,
        paper: Source,
        *,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> ReadResult:
        t0 = time.perf_counter()
        m = self._model()
        labelled = sentences(paper.abstract)
        tokens = m.prompt_tokens(messages(question, paper, labelled))
        while len(tokens) + len(m.cue) + 1 > m.n_ctx and len(labelled) > 1:
            labelled = labelled[:-1]  # too long for the context: fewer sentences
            tokens = m.prompt_tokens(messages(question, paper, labelled))
        while not _lock.acquire(timeout=_POLL):
            remaining(deadline, cancel)
        try:
            try:
                fresh = m.feed(tokens, deadline, cancel)
                logits = m.logits()
                yes = float(np.logaddexp.reduce(logits[list(m.yes)]))
                no = float(np.logaddexp.reduce(logits[list(m.no)]))
                p = 1.0 / (1.0 + math.exp(no - yes))
                sentence = None
                known = [s for s in labelled if s.label in m.labels]
                if known:
                    yes_tok = max(m.yes, key=lambda t: logits[t])
                    m.feed([*tokens, yes_tok, *m.cue], deadline, cancel)
                    after = m.logits()
                    sentence = max(known, key=lambda s: after[m.labels[s.label]])
            except ReaderUnavailable:
                raise
            except (ValueError, RuntimeError) as exc:  # llama.cpp's errors (context full, ...)
                raise ReaderUnavailable(f"llama.cpp failed: {exc}") from exc
        finally:
            _lock.release()
        return ReadResult(
            p_answers=min(1.0, max(0.0, p)),
            sentence=sentence,
            reader=self.name,
            seconds=time.perf_counter() - t0,
            detail={"method": "logits", "prompt_tokens": len(tokens), "evaluated": fresh},
        )

    @classmethod
    def check(cls, settings: Settings, timeout: float) -> dict[str, Any]:
        path = model_file(settings)
        reason = missing_reason(path, settings.reader.model)
        if reason:
            return {"ok": False, "reason": reason}
        if importlib.util.find_spec("llama_cpp") is None:
            return {"ok": False, "reason": "llama-cpp-python is not installed"}
        return {"ok": True, "model": str(path)}
