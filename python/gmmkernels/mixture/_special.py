"""The special functions of the variational mixture (``scipy.special``'s digamma, gammaln and
betaln) in numpy alone, for positive arguments; accurate to a few ulps.
"""
import math

import numpy as np

# Bernoulli-number coefficients of ψ(x) ~ ln x − 1/(2x) − Σ_n B_2n / (2n x^2n), n = 1..7: at
# x ≥ 12 the first omitted term is below 1e-18.
_DIGAMMA_SERIES = (1 / 12, -1 / 120, 1 / 252, -1 / 240, 1 / 132, -691 / 32760, 1 / 12)

_DIGAMMA_SHIFT = 12.0

_lgamma = np.frompyfunc(math.lgamma, 1, 1)


def digamma(x):
    """ψ(x) = d/dx log Γ(x) for x > 0, elementwise (a float for a scalar)."""
    x = np.array(x, dtype=np.float64)
    if np.any(~(x > 0)):
        raise ValueError("digamma is computed here for positive arguments only")
    result = np.zeros_like(x)
    # ψ(x) = ψ(x + 1) − 1/x until every argument is large enough for the series.
    small = x < _DIGAMMA_SHIFT
    while np.any(small):
        result[small] -= 1.0 / x[small]
        x[small] += 1.0
        small = x < _DIGAMMA_SHIFT
    inv2 = 1.0 / (x * x)
    series = np.zeros_like(x)
    for c in reversed(_DIGAMMA_SERIES):
        series = inv2 * (c + series)
    result += np.log(x) - 0.5 / x - series
    return result[()] if result.ndim == 0 else result


def gammaln(x):
    """log Γ(x) for x > 0, elementwise (a float for a scalar)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.asarray(_lgamma(x), dtype=np.float64)
    return out[()] if out.ndim == 0 else out


# Coefficients of Stirling's series log Γ(x) − ((x − ½) log x − x + ½ log 2π) in 1/x, 1/x³, …:
# at x ≥ 10 the first omitted term is below 1e-17.
_STIRLING_SERIES = (1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156, -3617 / 122400)

_STIRLING_FROM = 10.0


def _stirling_correction(x):
    """log Γ(x) − ((x − ½) log x − x + ½ log 2π), for x ≥ 10."""
    inv2 = 1.0 / (x * x)
    series = np.zeros_like(x)
    for c in reversed(_STIRLING_SERIES):
        series = c + inv2 * series
    return series / x


def betaln(a, b):
    """log B(a, b) = log Γ(a) + log Γ(b) − log Γ(a + b), elementwise.

    When the larger argument is ≥ 10, log Γ(a) − log Γ(a + b) (a the larger) is formed
    from Stirling's series as −(a − ½) log1p(b / a) − b log(a + b) + b plus the series'
    corrections, so that the two large log-gammas do not cancel.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    large, small = np.maximum(a, b), np.minimum(a, b)
    out = np.empty(np.broadcast(large, small).shape)
    direct = large < _STIRLING_FROM
    if np.any(direct):
        lg, sm = large[direct], small[direct]
        out[direct] = gammaln(lg) + gammaln(sm) - gammaln(lg + sm)
    far = ~direct
    if np.any(far):
        lg, sm = large[far], small[far]
        total = lg + sm
        out[far] = (gammaln(sm) - (lg - 0.5) * np.log1p(sm / lg) - sm * np.log(total) + sm
                    + _stirling_correction(lg) - _stirling_correction(total))
    return out[()] if out.ndim == 0 else out
