"""mrcnn_ohem.core.checks: one wording ("NAME must be ...; received ...") for every argument check."""
import math

import numpy as np
import pytest

from mrcnn_ohem.core import checks


@pytest.mark.parametrize("value,expected", [
    (3, True), (np.int64(3), True), (np.uint8(0), True),
    (True, False), (np.bool_(True), False), (3.0, False), ("3", False), (None, False),
])
def test_is_int(value, expected):
    assert checks.is_int(value) is expected


@pytest.mark.parametrize("value,expected", [
    (3, True), (2.5, True), (np.float32(0.5), True), (math.inf, True), (math.nan, True),
    (False, False), (np.bool_(False), False), ("1", False), (None, False), (1j, False),
])
def test_is_real(value, expected):
    assert checks.is_real(value) is expected


def test_fail_wording():
    with pytest.raises(ValueError, match=r"^top_k must be an integer >= 1; received 'x'$"):
        checks.fail("top_k", "an integer >= 1", "x")


def test_check_int():
    assert checks.check_int("n", np.int32(4), 1) == 4 and type(checks.check_int("n", np.int32(4))) is int
    assert checks.check_int("n", None, allow_none=True) is None
    assert checks.check_int("n", 5, 0, maximum=5) == 5
    with pytest.raises(ValueError, match=r"^n must be an integer >= 1; received 0$"):
        checks.check_int("n", 0, 1)
    with pytest.raises(ValueError, match=r"^n must be an integer in \[0, 5\]; received 6$"):
        checks.check_int("n", 6, 0, maximum=5)
    with pytest.raises(ValueError, match=r"^n must be None or an integer >= 0 \(per image\); received True$"):
        checks.check_int("n", True, allow_none=True, hint=" (per image)")
    with pytest.raises(ValueError, match=r"received 2\.0$"):
        checks.check_int("n", 2.0)
    with pytest.raises(ValueError, match=r"received None$"):
        checks.check_int("n", None)


def test_check_number():
    assert checks.check_number("f", 1) == 1.0 and type(checks.check_number("f", 1)) is float
    assert checks.check_number("f", 0.0, 0.0, 1.0) == 0.0  # closed ends are inside
    assert checks.check_number("f", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"^f must be a number in \(0, 1\]; received 0\.0$"):
        checks.check_number("f", 0.0, 0.0, 1.0, low_open=True)
    with pytest.raises(ValueError, match=r"^f must be a number in \[0, 1\); received 1$"):
        checks.check_number("f", 1, 0.0, 1.0, high_open=True)
    with pytest.raises(ValueError, match=r"^f must be a number > 0; received -1$"):
        checks.check_number("f", -1, 0.0, low_open=True)
    with pytest.raises(ValueError, match=r"^f must be a number >= 0; received nan$"):
        checks.check_number("f", math.nan, 0.0)
    with pytest.raises(ValueError, match=r"^f must be a number in \[-inf, inf\]; received inf$"):
        checks.check_number("f", math.inf)  # never infinite
    with pytest.raises(ValueError, match=r"received False$"):
        checks.check_number("f", False)


def test_check_bool_and_choice():
    assert checks.check_bool("b", np.bool_(True)) is True
    with pytest.raises(ValueError, match=r"^b must be True or False; received 1$"):
        checks.check_bool("b", 1)
    assert checks.check_choice("mode", "sum", ("sum", "mean")) == "sum"
    with pytest.raises(ValueError, match=r"^mode must be one of \['sum', 'mean'\]; received 'max'$"):
        checks.check_choice("mode", "max", ("sum", "mean"))
