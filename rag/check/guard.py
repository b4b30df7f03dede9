"""What a model must never say: our prompts and our keys.

Sources are fenced and the system prompt says they are data, but a small or
a tricked model may still echo its instructions or anything else it was given.
The guard removes, from whatever a generator wrote, each sentence that repeats
a run of words from our prompts or holds a configured secret (admin key, API
keys, the OpenAI key). It works on whole sentences, also while streaming:
text is released sentence by sentence, after the check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from rag.generate.prompt import REWRITE, SYSTEM
from rag.settings import Settings
from rag.text import segment

SHINGLE = 6  # words in a row shared with a prompt that count as quoting it
MIN_SECRET = 6  # shorter "secrets" would match ordinary words

_WORD = re.compile(r"\w+")
_END_MARK = re.compile(r"[.!?\n]")


def _shingles(text: str, n: int = SHINGLE) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def settings_secrets(settings: Settings) -> list[str]:
    keys = [settings.admin_key, settings.openai_api_key, *settings.api_keys]
    return [k.get_secret_value() for k in keys if k is not None]


class OutputGuard:
    def __init__(self, secrets: Iterable[str] = (), prompts: Iterable[str] = (SYSTEM, REWRITE)):
        self.secrets = [s for s in secrets if len(s) >= MIN_SECRET]
        self.prompt_shingles: set[tuple[str, ...]] = set()
        for prompt in prompts:
            self.prompt_shingles |= _shingles(prompt)

    @classmethod
    def from_settings(cls, settings: Settings) -> OutputGuard:
        return cls(settings_secrets(settings))

    def unsafe(self, sentence: str) -> bool:
        if any(secret in sentence for secret in self.secrets):
            return True
        return not self.prompt_shingles.isdisjoint(_shingles(sentence))

    def clean(self, text: str) -> tuple[str, int]:
        """`text` without its unsafe sentences, and how many were removed."""
        removed = 0
        out = []
        for paragraph in text.split("\n"):
            kept = []
            for a, b in segment(paragraph) if paragraph.strip() else ():  # one-off text
                sentence = paragraph[a:b]
                if self.unsafe(sentence):
                    removed += 1
                else:
                    kept.append(sentence)
            out.append(" ".join(kept))
        cleaned = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()
        # A secret split across sentence boundaries is still a secret.
        if any(secret in cleaned for secret in self.secrets):
            return "", removed + 1
        return cleaned, removed

    def stream(self, pieces: Iterable[str | None]) -> Iterator[str | None]:
        """Pass a token stream through sentence by sentence: a sentence is released
        once the next one has begun (or the stream ended) and it passed the check.
        `None` (the generator's reset) drops what is held and passes through."""
        held = ""
        ended = False
        for piece in pieces:
            if piece is None:
                held, ended = "", False
                yield None
                continue
            held += piece
            # Segmenting is the costly part: only once an end mark has arrived (until
            # the next sentence has begun), and uncached, so a stream's growing
            # prefixes never evict the abstracts' spans from the cache.
            ended = ended or bool(_END_MARK.search(piece))
            if not ended:
                continue
            spans = segment(held)
            if len(spans) < 2:
                continue
            cut = spans[-1][0]  # everything before the last, possibly unfinished, sentence
            ready, held = held[:cut], held[cut:]
            ended = bool(_END_MARK.search(held))
            text, _ = self.clean(ready)
            if text:
                yield text + ("\n" if ready.rstrip(" ").endswith("\n") else " ")
        if held:
            text, _ = self.clean(held)
            if text:
                yield text
