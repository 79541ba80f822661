import pytest

from sparks.data.answers import extract_answer, has_think_format, is_correct


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("<think>3+4=7</think>7", "7"),
        ("7", "7"),
        ("<think>1+1=2</think>2<eos>junk 9", "2"),
        ("Janet has 3.\n#### 1,234", "1234"),
        ("<think>3+4=7", None),  # never closed
        ("<think></think>", None),
        ("", None),
        ("no digits here", None),
        ("∑ unicode ✓ </think> ∞", None),
        ("<think>" + "3+4=7;" * 5000, None),
    ],
)
def test_extract_answer_never_raises(text, answer):
    assert extract_answer(text) == answer


def test_extract_answer_on_non_string():
    assert extract_answer(None) is None  # type: ignore[arg-type]


def test_is_correct():
    assert is_correct("<think>3+4=7</think>7", "7")
    assert not is_correct("<think>3+4=8</think>8", "7")
    assert is_correct("#### 1,234", "1234")
    assert not is_correct("<think>", "7")


def test_think_format():
    assert has_think_format("<think>3+4=7;7-2=5</think>5")
    assert not has_think_format("<think>3+4=7</think>")
    assert not has_think_format("<think>3+4=7</think>5<think>")
    assert not has_think_format("5")
