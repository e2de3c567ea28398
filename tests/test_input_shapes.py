"""The one shape grammar (hasten.input_shapes.parse_dims / parse_shape_args), used by every command."""

import pytest

from hasten.errors import DataError
from hasten.input_shapes import parse_dims, parse_shape_args


@pytest.mark.parametrize("text", ["1x3x48x320", "1,3,48,320", "(1, 3, 48, 320)", "1 x 3 x 48 x 320", "1*3*48*320",
                                  [1, 3, 48, 320]])
def test_every_spelling_gives_the_same_shape(text):
    assert parse_dims(text) == (1, 3, 48, 320)


def test_a_bare_size_is_one_dim():
    assert parse_dims("128") == (128,) and parse_dims(7) == (7,)


@pytest.mark.parametrize("text, message", [("1x3xfoo", "is not a shape"), ("1x0x4", "must be positive"),
                                           ("1,-3", "must be positive"), ("", "empty shape"),
                                           ("()", "empty shape"), ("1.5x2", "is not a shape")])
def test_bad_shapes_say_what_is_wrong(text, message):
    with pytest.raises(DataError, match=message) as info:
        parse_dims(text, "--shape x")
    assert str(info.value).startswith("--shape x: ")


def test_shape_args_take_both_spellings_and_dim_sizes():
    assert parse_shape_args(["x=1x3x48x320", "y=1,3,48,320", "sequence=64"]) == {
        "x": (1, 3, 48, 320), "y": (1, 3, 48, 320), "sequence": 64}
    assert parse_shape_args(["x=(3, 16)"]) == {"x": (3, 16)}
    assert parse_shape_args([]) == {}


@pytest.mark.parametrize("item", ["x", "=1x2", "x=", "x 1x2"])
def test_shape_args_without_name_and_dims_are_refused(item):
    with pytest.raises(DataError, match="expected NAME=DIMS"):
        parse_shape_args([item])


def test_shape_args_report_the_bad_item():
    with pytest.raises(DataError, match=r"--shape 'x=3,zero'.*not a shape"):
        parse_shape_args(["x=3,zero"])
