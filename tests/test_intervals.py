"""The normal quantile of the intervals comes from the standard library; it equals scipy's."""

from __future__ import annotations

import pytest
from fairwatch.monitor.intervals import z_value
from scipy.stats import norm


@pytest.mark.parametrize("confidence", [0.5, 0.8, 0.9, 0.95, 0.975, 0.99, 0.999, 0.999999])
def test_z_value_equals_scipy_norm_ppf(confidence: float) -> None:
    assert z_value(confidence) == pytest.approx(norm.ppf(0.5 + confidence / 2), rel=1e-13, abs=1e-13)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.1, 1.5])
def test_z_value_rejects_confidence_outside_the_open_interval(confidence: float) -> None:
    with pytest.raises(ValueError, match=r"confidence: must be in \(0, 1\)"):
        z_value(confidence)
