"""Text helpers shared by retrieval, generation and verification.

Sentences come from pysbd (rule-based; knows "e.g.", "et al.", decimals and
URLs); terms from the same tokenizer, stopword list and Snowball stemmer that
the BM25 index uses, so "generalize" and "generalization" meet.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

import pysbd
import Stemmer
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
STOPWORDS = frozenset(ENGLISH_STOP_WORDS)
_local = threading.local()


def stemmer() -> Stemmer.Stemmer:
    # PyStemmer objects are not thread-safe: one per thread.
    if not hasattr(_local, "stemmer"):
        _local.stemmer = Stemmer.Stemmer("english")
    return _local.stemmer


def _segmenter() -> pysbd.Segmenter:
    if not hasattr(_local, "segmenter"):
        _local.segmenter = pysbd.Segmenter(language="en", clean=False, char_span=True)
    return _local.segmenter


@lru_cache(maxsize=4096)
def sentence_spans(text: str) -> tuple[tuple[int, int], ...]:
    """(start, end) of each sentence, trailing whitespace excluded. Cached: abstracts
    recur across questions."""
    return segment(text)


# A sentence ends in final punctuation, maybe inside a closing quote or bracket.
_FINAL = re.compile(r"[.!?][\"')\]”’]*$")
# An enumeration's marker: "(a) ", "(iv) ", "2) ", "(3) ".
_MARKER = re.compile(r"^(\((?:[a-z]|[ivx]{1,4}|\d{1,2})\)|(?:[a-z]|[ivx]{1,4}|\d{1,2})\))\s+")
LONGEST = 900  # characters: pieces are not merged past this
# A structured abstract's section label glued to the sentence before it, as some
# sources print them ("... transplant candidates.AIM: To identify ..."): the sentence
# ends at the period, and the label belongs to neither sentence.
_GLUED_LABEL = re.compile(r"(?<=[a-z0-9)\]%]\.)[A-Z]{3,}(?: [A-Z]{2,})*:\s+(?=\S)")
# Punctuation a sentence cannot start with, left where a source dropped a label.
_STRAY = re.compile(r"[:;,]\s+")


def segment(text: str) -> tuple[tuple[int, int], ...]:
    """`sentence_spans` without the cache, for text seen once (a stream's prefix).

    pysbd cuts an enumeration inside a sentence ("datasets that (a) incorporate
    ..., (b) comprise ..., and (c) capture ...") into pieces that do not read as
    sentences. A piece whose predecessor has no final punctuation is joined to
    it, so the list stays whole; an item that is a sentence of its own loses its
    marker ("(ii) The extreme aspect ..." is quoted as "The extreme aspect ...").
    A section label glued to the sentence before ("candidates.AIM: To identify
    ...") starts a new sentence, without the label, and a sentence does not start
    on the colon of a label the source dropped.
    """
    spans: list[tuple[int, int]] = []
    for span in _segmenter().segment(text):
        start, end = span.start, span.end
        while end > start and text[end - 1].isspace():
            end -= 1
        while start < end and text[start].isspace():
            start += 1
        if end <= start:
            continue
        if spans:
            p_start, p_end = spans[-1]
            if not _FINAL.search(text[p_start:p_end]) and end - p_start <= LONGEST:
                spans[-1] = (p_start, end)
                continue
        marker = _MARKER.match(text[start:end])
        if marker and end - start - marker.end() >= 3:
            start += marker.end()
        stray = _STRAY.match(text, start, end)  # ". : A Markov model ...": a label lost
        if stray:
            start = stray.end()
        for label in _GLUED_LABEL.finditer(text, start, end):
            if label.start() > start:
                spans.append((start, label.start()))
            start = label.end()
        if end > start:
            spans.append((start, end))
    return tuple(spans)


def terms(text: str) -> list[str]:
    """Lower-cased, stemmed content words (stopwords dropped)."""
    words = [w for w in _TOKEN.findall(text.lower()) if w not in STOPWORDS]
    return stemmer().stemWords(words) if words else []


GENERAL_ZIPF = 6.0
"""The Zipf frequency (log10 of uses per billion English words) at which a word
counts as fully general ("the", "best", "does" come near it)."""
SPECIFIC_FLOOR = 0.05  # the least weight a very common word keeps


@lru_cache(maxsize=65536)
def _english_zipf(word: str) -> float:
    # Imported here: 0.19 s that processes which only chunk (ingest workers) never pay.
    from wordfreq import zipf_frequency

    return float(zipf_frequency(word, "en"))


def specificity(text: str) -> dict[str, float]:
    """Each of `terms(text)`'s stems with how rare its words are in English at large:
    `GENERAL_ZIPF` minus the word's Zipf frequency (wordfreq), at least
    `SPECIFIC_FLOOR`. "oversmoothing" gets 6.0, "hyperparameter" 4.8, "bayesian"
    3.0, "conflict" 1.4, "best" 0.16. A corpus's IDF says a word is rare *here*; this
    says whether it names a topic or only asks about one, in any field."""
    out: dict[str, float] = {}
    words = [w for w in _TOKEN.findall(text.lower()) if w not in STOPWORDS]
    for word, stem in zip(words, stemmer().stemWords(words) if words else [], strict=True):
        rare = max(SPECIFIC_FLOOR, GENERAL_ZIPF - _english_zipf(word))
        out[stem] = max(out.get(stem, 0.0), rare)
    return out


def place_markers(sentence: str, ns: list[int], *, end: str = "") -> str:
    """Citation markers before the sentence's final punctuation: "... views [1][2].".
    A sentence without final punctuation gets the markers, then `end`."""
    if not ns:
        return sentence
    marks = "".join(f"[{n}]" for n in ns)
    s = sentence.rstrip()
    if s and s[-1] in ".!?":
        return f"{s[:-1].rstrip()} {marks}{s[-1]}"
    return f"{s} {marks}{end}"
