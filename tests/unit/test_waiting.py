"""``tests.waiting.eventually``: returns the first truthy value, fails naming what never held."""

from __future__ import annotations

import pytest

from tests.waiting import ManualClock, eventually


def test_returns_the_first_truthy_value_and_retries_the_given_errors() -> None:
    answers = iter([KeyError("not yet"), None, 0, "ready"])

    def check() -> object:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert eventually(check, interval=0, retry_on=(KeyError,)) == "ready"


def test_a_condition_that_never_holds_fails_naming_it() -> None:
    with pytest.raises(AssertionError, match=r"the door opened did not hold within 0.05 s"):
        eventually(lambda: False, timeout=0.05, interval=0.01, what="the door opened")


def test_other_errors_are_not_retried() -> None:
    with pytest.raises(ValueError):
        eventually(lambda: int("x"), retry_on=(KeyError,))


def test_a_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(10.0)
    assert clock() == 10.0
    clock.advance(2.5)
    assert clock() == 12.5
