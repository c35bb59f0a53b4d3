import numpy as np
import pytest

from effai_fast._validation import (
    as_float_array,
    check_consistent_length,
    check_int,
    check_out,
    check_real,
    check_rng,
    result_float_dtype,
)


def test_keeps_float_dtypes_and_casts_ints():
    assert as_float_array(np.ones(3, np.float32), "x").dtype == np.float32
    assert as_float_array(np.ones(3, np.float16), "x").dtype == np.float32
    assert as_float_array([1, 2, 3], "x").dtype == np.float64
    assert as_float_array(np.ones(3, bool), "x").dtype == np.float64


def test_makes_contiguous_copy_of_strided_input():
    x = np.arange(20.0).reshape(4, 5)[:, ::2]
    y = as_float_array(x, "x")
    assert y.flags.c_contiguous
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("bad", [np.ones(3, complex), np.array(["a"]), np.array([object()])])
def test_rejects_non_real(bad):
    with pytest.raises(TypeError, match="'?x'?"):
        as_float_array(bad, "x")


def test_shape_and_empty_and_finite_checks():
    with pytest.raises(ValueError, match="x must have 2 dimension"):
        as_float_array(np.ones(3), "x", ndim=2)
    with pytest.raises(ValueError, match=r"axis 1 is 3, expected 4"):
        as_float_array(np.ones((2, 3)), "x", shape=(None, 4))
    with pytest.raises(ValueError, match="x must not be empty"):
        as_float_array(np.ones((0, 3)), "x")
    assert as_float_array(np.ones((0, 3)), "x", allow_empty=True).shape == (0, 3)
    with pytest.raises(ValueError, match="NaN"):
        as_float_array([1.0, np.nan], "x", finite=True)
    with pytest.raises(TypeError, match="x must be an array"):
        as_float_array(None, "x")


def test_scalars():
    assert check_int(3, "k", min_value=1) == 3
    with pytest.raises(TypeError, match="k must be an integer"):
        check_int(2.0, "k")
    with pytest.raises(TypeError):
        check_int(True, "k")
    with pytest.raises(ValueError, match="k must be >= 1"):
        check_int(0, "k", min_value=1)
    assert check_real(2, "t", min_value=0, min_inclusive=False) == 2.0
    with pytest.raises(ValueError, match="t must be > 0"):
        check_real(0.0, "t", min_value=0, min_inclusive=False)
    with pytest.raises(ValueError, match="finite"):
        check_real(float("nan"), "t")


def test_out_buffer_checks():
    x = np.zeros((2, 3))
    out = np.empty((2, 3))
    assert check_out(out, "out", (2, 3), np.float64, x) is out
    with pytest.raises(TypeError, match="dtype float32"):
        check_out(out, "out", (2, 3), np.float32)
    with pytest.raises(ValueError, match="shape"):
        check_out(out, "out", (3, 2), np.float64)
    with pytest.raises(ValueError, match="share memory"):
        check_out(x, "out", (2, 3), np.float64, x)
    with pytest.raises(ValueError, match="C-contiguous"):
        check_out(np.empty((3, 2)).T, "out", (2, 3), np.float64)


def test_lengths_rng_and_result_dtype():
    assert check_consistent_length(("a", [1, 2]), ("b", np.ones(2))) == 2
    with pytest.raises(ValueError, match="a: 2, b: 3"):
        check_consistent_length(("a", [1, 2]), ("b", np.ones(3)))
    assert check_rng(0).integers(100) == np.random.default_rng(0).integers(100)
    with pytest.raises(TypeError, match="seed"):
        check_rng("zero")
    assert result_float_dtype(np.ones(1, np.float32), None) == np.float32
    assert result_float_dtype(np.ones(1, np.float32), np.ones(1)) == np.float64
