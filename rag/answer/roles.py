"""Which sentences of an abstract state what the paper found: a small fitted model.

An abstract sets its scene (the field, the motivation, what is not known), says
what the study set out to do and how, and then what it built, found and
concluded. An answer should quote the last three, not the scene: "Why do
neural networks prefer simple functions?" is answered by what a paper found
about simplicity bias, not by its sentence on why others proposed it.

Each candidate sentence gets the probability that it states a finding (a
contribution, a result or a conclusion) from:

- cue phrases that mark a role in most fields' abstracts ("we show",
  "remains unclear", "the aim of this study was", "were enrolled", "further
  studies are needed", "these results suggest");
- its place in the abstract (the opening sentence is usually the setting, the
  closing one the conclusion).

The weights are a logistic regression fitted on sentences of both dev corpora
labelled with their role by reading (`evals/data/roles-*.jsonl`) by
`python -m evals.roles --fit`, which also reports held-out figures, including
one corpus's model scored on the other's sentences; they live in `roles.json`
beside this module, so refitting changes no code.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.answer import fitted
from rag.answer.fitted import LinearModel
from rag.check.support import SourceSentence
from rag.text import sentence_spans

WEIGHTS = Path(__file__).with_name("roles.json")

_FINDING = re.compile(
    r"\b(we (show|find|found|prove|demonstrate|observe|establish|argue)|results (show|indicate|"
    r"suggest|demonstrate)|experiments (show|demonstrate)|(this|which) (suggests|shows|explains)|"
    r"outperform|achiev|improv|reduc|we propose|we introduce|we present)",
    re.I,
)
_BACKGROUND = re.compile(
    r"^(despite|however|although|while|recent|in recent years)|\b(remains? (largely )?"
    r"(unexplored|unclear|open|elusive|poorly understood)|little is known|not (yet )?(fully )?"
    r"understood|long-standing|challenge)|\b(has|have) (been (considered|proposed|widely|"
    r"extensively|increasingly|commonly|traditionally)|(attracted|received|gained) )",
    re.I,
)
# What a study set out to do, and how: the setting of a finding, not the finding.
_AIM = re.compile(
    r"\b(the (aims?|purposes?|objectives?|goals?) of (this|the present|our|the) (study|work|"
    r"paper|review|trial)|we (aimed|sought|set out)|(this|the present) study (aimed|sought|was "
    r"designed)|was (to|designed to) (investigate|evaluate|assess|determine|examine|compare))",
    re.I,
)
_METHOD = re.compile(
    r"\b((were|was) (enrolled|recruited|randomi[sz]ed|performed|conducted|carried out|"
    r"undertaken)|(was|were) used to|retrospective(ly)? review|we (retrospectively )?(reviewed|"
    r"enrolled|recruited))",
    re.I,
)
# What is left for later work: said where a finding would be, but not a finding.
_FUTURE = re.compile(
    r"\b(further|future|more|additional|larger) (\w+ ){0,3}(studies|research|work|trials|"
    r"investigations?)\b[^.;]{0,80}\b(needed|required|warranted|recommended|necessary|should|"
    r"will be|would be)\b|\bremains? to be (determined|established|seen|elucidated)\b",
    re.I,
)
# How abstracts in most fields state what they concluded.
_CONCLUSION = re.compile(
    r"^(in conclusion|in summary|to conclude|overall|taken together|together,)|\b(we conclude|"
    r"(these|our) (results|findings|data) (suggest|indicate|show|demonstrate|support)|"
    r"(suggests?|indicates?) that|appears? to be|should be (considered|used))",
    re.I,
)
CUES = {
    "finding_cue": _FINDING,
    "background_cue": _BACKGROUND,
    "aim_cue": _AIM,
    "method_cue": _METHOD,
    "future_cue": _FUTURE,
    "conclusion_cue": _CONCLUSION,
}
PLACES = ("opening", "closing", "place")


def place(abstract: str, start: int) -> tuple[int, int]:
    """(index, count) of the sentence starting at `start` among the abstract's."""
    spans = sentence_spans(abstract)  # cached: no list of starts built per sentence
    return max(bisect.bisect_right(spans, start, key=lambda span: span[0]) - 1, 0), len(spans)


def cue_features(text: str, index: int, count: int) -> dict[str, float]:
    """The role cues and place of one sentence (`index` of `count` in its abstract)."""
    row = {name: 1.0 if pattern.search(text) else 0.0 for name, pattern in CUES.items()}
    row["opening"] = 1.0 if index == 0 else 0.0
    row["closing"] = 1.0 if index == count - 1 else 0.0
    row["place"] = index / (count - 1) if count > 1 else 0.0
    return row


FEATURES = tuple(cue_features("", 0, 1))


def model(path: Path = WEIGHTS) -> LinearModel:
    """Does this sentence state a finding?"""
    return fitted.load(path)


def finding_probability(
    sentences: Sequence[SourceSentence], m: LinearModel | None = None
) -> np.ndarray:
    """For each sentence, the probability that it states a finding (what its paper
    built, found or concluded) rather than its setting."""
    m = m or model()
    rows = [cue_features(s.text, *place(s.source.abstract, s.start)) for s in sentences]
    return m.probabilities(rows)
