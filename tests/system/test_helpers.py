"""The test helpers themselves: a helper that passes too early hides bugs."""

import pytest

from conftest import wait_until


def test_wait_until_keeps_waiting_through_an_error_it_ignores():
    answers = iter([OSError("refused"), OSError("refused"), "up"])

    def probe():
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    assert wait_until(probe, timeout=5, interval=0, errors=(OSError,)) == "up"


def test_wait_until_names_the_last_error_when_it_times_out():
    def probe():
        raise OSError("refused")

    with pytest.raises(AssertionError, match="refused"):
        wait_until(probe, timeout=0.05, interval=0.01, errors=(OSError,), what="a server")
