"""The distillation text: deterministic and disjoint from the evaluation sentences."""

from __future__ import annotations

import pytest

from hasten.compress.text_corpus import training_sentences
from hasten.zoo import text


def test_training_text_is_the_train_split_and_never_evaluation():
    train = training_sentences(500)
    assert train == training_sentences(500) and len(train) == 500
    held = {s.lower() for s in text.sentences("evaluation") + text.sentences("calibration")}
    assert not held & {s.lower() for s in train}


@pytest.mark.slow
def test_package_sentences_extend_the_text_without_leaks():
    base = len(text.sentences("train"))
    more = training_sentences(base + 2000)
    assert len(more) == base + 2000 and len(set(more)) == len(more)
    held = {s.lower() for s in text.sentences("evaluation")}
    assert not held & {s.lower() for s in more}
