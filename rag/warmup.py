"""Warm-up: embed abstract sentences ahead of questions, beside the server."""

from __future__ import annotations

import gc
import threading

from rag.answer.match import Matcher
from rag.check.support import SentenceEncoder
from rag.index.store import Store
from rag.text import sentence_spans
from rag.types import Source

_settled = False


def settle_heap() -> None:
    """Leave what start-up made (modules, the model, the index views) out of every
    later garbage collection: `gc.freeze()` after one last collection. An API
    process holds about 220k objects once loaded; a full collection of them took
    118 ms, long enough to stall whichever request it ran in, and about 0 ms after
    the freeze. Once per process (the first app in it): objects frozen stay
    uncollected, and a test process makes many apps."""
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()


def warm_sentences(
    store: Store, encoder: SentenceEncoder, limit: int, stop: threading.Event, batch: int = 16
) -> int:
    """Embed abstract sentences (the extractive summary and the citation checks need
    them) into the encoder's cache, up to `limit`, in small batches that leave the
    CPU to requests; returns how many. Stops early when `stop` is set."""
    done = 0
    offset = 0
    pending: list[str] = []
    while done < limit and not stop.is_set():
        page = store.papers(offset=offset, limit=100)
        if not page:
            break
        offset += len(page)
        for meta in page:
            abstract = str(meta.get("abstract") or "")
            pending += [abstract[a:b] for a, b in sentence_spans(abstract)]
            while len(pending) >= batch and done < limit and not stop.is_set():
                take = min(batch, limit - done)
                encoder.encode(pending[:take])
                done += take
                pending = pending[take:]
                stop.wait(0.05)  # yield to requests between batches
    if pending and done < limit and not stop.is_set():
        encoder.encode(pending[: limit - done])
        done += min(len(pending), limit - done)
    return done


def warm_matcher(store: Store, matcher: Matcher, stop: threading.Event, batch: int = 1) -> int:
    """Read papers' words in context into the gate's matcher (rag/answer/match.py), as many
    as it keeps, one paper (about 50-90 ms of the model on 2 cores) at a time so a
    request waits little for the CPU; returns how many. Stops early when `stop` is set."""
    done = 0
    offset = 0
    while done < matcher.papers and not stop.is_set():
        page = store.papers(offset=offset, limit=100)
        if not page:
            break
        offset += len(page)
        sources = [
            Source(
                0,
                str(m.get("paper_id", "")),
                str(m.get("title") or ""),
                str(m.get("abstract") or ""),
                None,
                0.0,
                0.0,
            )
            for m in page
        ][: matcher.papers - done]
        for lo in range(0, len(sources), batch):
            if stop.is_set():
                break
            matcher.paper_tokens(sources[lo : lo + batch])
            done += len(sources[lo : lo + batch])
            stop.wait(0.05)  # yield to requests between batches
    return done
