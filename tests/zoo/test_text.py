import hashlib

import pytest

from hasten.errors import DataError
from hasten.zoo import text


def test_sizes_and_disjoint_splits():
    calib, evalu, train = (text.sentences(s) for s in text.SPLITS)
    assert len(calib) == 512 and len(evalu) == 300
    assert len(calib) + len(evalu) + len(train) >= 1000
    assert len(train) >= 1000  # a real pool for distillation
    assert not set(calib) & set(evalu)
    assert not set(calib) & set(train)
    assert not set(evalu) & set(train)
    every = calib + evalu + train
    assert len({s.lower() for s in every}) == len(every)  # deduplicated case-insensitively


def test_deterministic_across_calls():
    first = {s: text.sentences(s) for s in text.SPLITS}
    text._all_sentences.cache_clear()
    second = {s: text.sentences(s) for s in text.SPLITS}
    assert first == second
    every = first["calibration"] + first["evaluation"] + first["train"]
    keys = [hashlib.sha256(s.encode()).hexdigest() for s in every]
    assert keys == sorted(keys)  # the split order is the stable hash order


def test_sentences_look_like_prose():
    every = [s for split in text.SPLITS for s in text.sentences(split)]
    for s in every:
        n = len(s.split())
        assert 6 <= n <= 40, s
        assert s[0].isupper() and s.endswith(".") and s.isascii(), s
        assert not any(c in s for c in "{}[]()<>=_`\\"), s
    # varied: many distinct first words, long average length
    assert len({s.split()[0] for s in every}) > 300
    assert 9 < sum(len(s.split()) for s in every) / len(every) < 25


def test_unknown_split():
    with pytest.raises(DataError, match="calibration, evaluation, train"):
        text.sentences("test")
