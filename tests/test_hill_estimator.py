"""HillRegressor against scikit-learn's estimator checks."""

import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from effai_fast.hill import HillRegressor  # noqa: E402

# The checks feed X with several features; a dose-response curve has exactly one.
_ONE_FEATURE = "HillRegressor accepts exactly one feature (the dose)"
EXPECTED_FAILED = {
    "check_fit2d_1sample": "a 4-parameter curve needs at least 4 points",
    "check_fit2d_1feature": "a 4-parameter curve needs at least 4 points",
}


@parametrize_with_checks([HillRegressor()], expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_compatible(estimator, check):
    check(estimator)
