"""Neural Cleanse's outlier test on the per-label trigger norms (Wang et al., S&P 2019, §IV-C).

The norms are assumed roughly normal; their spread is estimated robustly by the median absolute
deviation (MAD) scaled by 1.4826, the consistency constant that makes it estimate the standard deviation
of a normal distribution.

Differences from the paper and the authors' release: docs/deviations.md#neural-cleanse.
"""

from __future__ import annotations

import torch

MAD_CONSISTENCY = 1.4826
ANOMALY_THRESHOLD = 2.0


def anomaly_index(norms: torch.Tensor) -> torch.Tensor:
    """|L_y − median(L)| / (1.4826 · median(|L − median(L)|)) for each label's norm L_y (unitless).

    The median of an even count is the mean of the two middle values (as numpy's). When the MAD is 0
    (half of the norms or more are equal), labels at the median get 0 and the others +inf.
    """
    norms = norms.double()
    median = torch.quantile(norms, 0.5)
    deviation = (norms - median).abs()
    mad = MAD_CONSISTENCY * torch.quantile(deviation, 0.5)
    if mad == 0:
        return torch.where(deviation == 0, 0.0, torch.inf).double()
    return deviation / mad


def flag_outliers(norms: torch.Tensor, threshold: float = ANOMALY_THRESHOLD) -> list[int]:
    """Labels whose norm is below the median with an anomaly index above `threshold` (NC: 2, i.e. more
    than ~95% probability of being an outlier), smallest norm first."""
    index = anomaly_index(norms)
    below = norms.double() < torch.quantile(norms.double(), 0.5)
    flagged = torch.nonzero(below & (index > threshold)).flatten()
    return flagged[norms[flagged].argsort()].tolist()
