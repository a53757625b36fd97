"""Which clips the foreign-speech check looks at (svwatchd.server._engines.router)."""

from __future__ import annotations

import pytest

from svwatchd.server._engines.base import Heard, make_utterance
from svwatchd.server._engines.router import CHECK_BELOW, _doubtful


def heard(*confidences: float) -> Heard:
    words = [(f" w{i}", i * 0.5, i * 0.5 + 0.4, p) for i, p in enumerate(confidences)]
    utterance = make_utterance(words, limit=60.0)
    return Heard([] if utterance is None else [utterance])


@pytest.mark.parametrize(
    ("confidences", "doubtful"),
    [
        ((0.95,) * 8, False),
        ((0.5,) * 8, True),  # foreign speech under tiny.en: 0.40-0.56 on average
        ((0.1, 0.95, 0.95, 0.95, 0.9, 0.2), False),  # words cut at both edges: not counted
        ((0.95, 0.6, 0.6, 0.6, 0.6, 0.95), True),  # unsure inside: checked
        ((0.1, 0.95, 0.95, 0.2), True),  # four words or fewer: every one counts
        ((), False),  # no words: nothing to check
    ],
)
def test_a_clip_is_checked_when_its_inner_words_are_unsure(
    confidences: tuple[float, ...], doubtful: bool
) -> None:
    assert CHECK_BELOW == 0.8
    assert _doubtful(heard(*confidences)) is doubtful
