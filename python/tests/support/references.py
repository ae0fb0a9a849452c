"""Slow, obvious float64 references for the kernels and the error measures the tests use.

Every reference is computed in float64, also for float32 inputs, from the operands as the
kernels see them: small operands (Q, Qs, w, R, centers, B) rounded to X's dtype first (the
API converts them). Errors are measured against the natural scale of each sum's rounding
error (the same sum taken over absolute values), so a tolerance of the contract's size
cannot hide a wrong term.
"""
import numpy as np
import pytest

# Relative tolerances of the contract: float32 and float64 results against float64 references.
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
DTYPES = [np.float32, np.float64]


def rtol(dtype):
    return RTOL[np.dtype(dtype)]


def as_operand(a, dtype):
    """`a` as the kernel sees it: rounded to X's dtype, then widened to float64 for the reference."""
    if a is None:
        return None
    return np.asarray(a).astype(dtype).astype(np.float64)


def centred(X, center, dtype):
    X64 = np.array(X, dtype=np.float64)  # a copy in any layout; float32 → float64 is exact
    c = as_operand(center, dtype)
    return X64 if c is None else X64 - c


def quadform_reference(X, Q, center=None):
    """q_i = (x_i − c)ᵀ Q (x_i − c) in float64, shape (n,)."""
    Xc = centred(X, center, X.dtype)
    Q64 = as_operand(Q, X.dtype)
    return np.sum(Xc @ Q64 * Xc, axis=1)


def gram_reference(X, w=None, center=None):
    """(G, A): G = Σ w_i (x_i − c)(x_i − c)ᵀ and A = Σ |w_i| |x_i − c| |x_i − c|ᵀ, float64 (d, d).

    A is the natural scale of the rounding error of G: every term of G_jk is bounded by
    the matching term of A_jk, and A_jk ≤ sqrt(A_jj A_kk) (Cauchy–Schwarz).
    """
    Xc = centred(X, center, X.dtype)
    w64 = np.ones(Xc.shape[0]) if w is None else as_operand(w, X.dtype)
    G = Xc.T @ (w64[:, None] * Xc)
    absXc = np.abs(Xc)
    A = absXc.T @ (np.abs(w64)[:, None] * absXc)
    return G, A


def ratio(err, scale):
    """err / scale elementwise; where the scale is zero the result must be exact (else inf)."""
    err, scale = np.broadcast_arrays(np.asarray(err, np.float64), np.asarray(scale, np.float64))
    out = np.zeros(err.shape)
    nz = scale > 0
    out[nz] = err[nz] / scale[nz]
    out[~nz & (err != 0)] = np.inf
    out[np.isnan(err)] = np.inf
    return float(np.max(out)) if out.size else 0.0


def quadform_error_spd(got, X, Q, center=None):
    """Largest elementwise relative error max_i |q_i − r_i| / r_i, for SPD Q (so r_i > 0)."""
    ref = quadform_reference(X, Q, center)
    assert got.shape == ref.shape
    return ratio(np.abs(got.astype(np.float64) - ref), np.abs(ref))


def quadform_error_general(got, X, Q, center=None):
    """max_i |q_i − r_i| / (|x_i − c|² ‖Q‖₂) for any Q: q_i itself may be near zero."""
    ref = quadform_reference(X, Q, center)
    assert got.shape == ref.shape
    Xc = centred(X, center, X.dtype)
    norm_q = np.linalg.norm(as_operand(Q, X.dtype), 2) if Xc.shape[1] else 0.0
    scale = np.sum(Xc * Xc, axis=1) * norm_q
    return ratio(np.abs(got.astype(np.float64) - ref), scale)


def gram_error(got, X, w=None, center=None):
    """max_jk |G_jk − R_jk| / sqrt(A_jj A_kk), with A the |w|-weighted Gram matrix of |X − c|.

    For non-negative w, A = R and this is the error relative to sqrt(R_jj R_kk); with
    negative weights it is the scale a sum with cancellation can be held to.
    """
    R, A = gram_reference(X, w, center)
    assert got.shape == R.shape
    diag = np.sqrt(np.diag(A))
    return ratio(np.abs(got.astype(np.float64) - R), np.outer(diag, diag))


def spd(rng, d, dtype=np.float64):
    """A symmetric positive definite (d, d) matrix, exactly symmetric."""
    A = rng.standard_normal((d, d))
    Q = A @ A.T / max(d, 1) + 0.5 * np.eye(d)
    return ((Q + Q.T) / 2).astype(dtype)


def general_qs(rng, k, d, dtype=np.float64):
    """K non-symmetric, indefinite (d, d) matrices."""
    return rng.standard_normal((k, d, d)).astype(dtype)


# --- quadform_many ---------------------------------------------------------------------------

def quadform_many_reference(X, Qs, centers=None):
    """(ref, scale), both (n, K): ref_ik = (x_i − c_k)ᵀ Q_k (x_i − c_k) in float64 and
    scale_ik = |x_i − c_k|² ‖Q_k‖₂, which bounds |ref_ik| and its rounding error."""
    dtype = X.dtype
    X64 = np.array(X, dtype=np.float64)
    Q64 = as_operand(Qs, dtype)
    C64 = as_operand(centers, dtype)
    n, d = X64.shape
    K = Q64.shape[0]
    ref = np.zeros((n, K))
    scale = np.zeros((n, K))
    for k in range(K):
        Xc = X64 if C64 is None else X64 - C64[k]
        ref[:, k] = np.sum(Xc @ Q64[k] * Xc, axis=1)
        norm = np.linalg.norm(Q64[k], 2) if d else 0.0
        scale[:, k] = np.sum(Xc * Xc, axis=1) * norm
    return ref, scale


def quadform_many_error(got, X, Qs, centers=None):
    ref, scale = quadform_many_reference(X, Qs, centers)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return ratio(np.abs(got.astype(np.float64) - ref), scale)


# --- weighted_gram_many ----------------------------------------------------------------------

def gram_many_reference(X, R, centers=None):
    """(G, scale), both (K, d, d): G_k = Σ_i R_ik (x_i − c_k)(x_i − c_k)ᵀ in float64, and
    scale_k[j, l] = sqrt(A_jj A_ll) with A_k the |R|-weighted Gram matrix of |x − c_k|."""
    dtype = X.dtype
    X64 = np.array(X, dtype=np.float64)
    R64 = as_operand(R, dtype)
    C64 = as_operand(centers, dtype)
    n, d = X64.shape
    K = R64.shape[1]
    G = np.zeros((K, d, d))
    scale = np.zeros((K, d, d))
    for k in range(K):
        Xc = X64 if C64 is None else X64 - C64[k]
        G[k] = Xc.T @ (R64[:, k : k + 1] * Xc)
        diag = np.sqrt(np.sum(np.abs(R64[:, k : k + 1]) * Xc * Xc, axis=0))
        scale[k] = np.outer(diag, diag)
    return G, scale


def gram_many_error(got, X, R, centers=None):
    G, scale = gram_many_reference(X, R, centers)
    assert got.shape == G.shape, (got.shape, G.shape)
    return ratio(np.abs(got.astype(np.float64) - G), scale)


# --- weighted_sum and matmul -----------------------------------------------------------------

def product_error(got, A, B):
    """max |got − A B| / (|A| |B|) with A, B as float64 (A B's rounding error scale)."""
    A64 = np.array(A, dtype=np.float64)
    B64 = np.array(B, dtype=np.float64)
    ref = A64 @ B64
    assert got.shape == ref.shape, (got.shape, ref.shape)
    return ratio(np.abs(got.astype(np.float64) - ref), np.abs(A64) @ np.abs(B64))


def weighted_sum_error(got, X, R):
    """Error of Rᵀ X, with R rounded to X's dtype first."""
    return product_error(got, as_operand(R, X.dtype).T, X)


def raises(exc, call, *needles):
    """Runs call(), expects `exc`, and checks that every needle appears in the message."""
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    for needle in needles:
        assert needle in message, "%r not in message %r" % (needle, message)
    return message


def blobs(n=2000, d=5, k=3, seed=0, dtype=np.float64, scale=6.0):
    """Well-separated Gaussian blobs with random full covariances."""
    rng = np.random.RandomState(seed)
    centers = rng.normal(scale=scale, size=(k, d))
    labels = rng.randint(k, size=n)
    shapes = rng.normal(size=(k, d, d)) * 0.3 + np.eye(d)
    X = centers[labels] + np.einsum("nij,nj->ni", shapes[labels], rng.normal(size=(n, d)))
    return X.astype(dtype), centers


def given_inits(covariance_type, centers, seed=1):
    """weights_init, means_init and precisions_init for both estimators."""
    rng = np.random.RandomState(seed)
    k, d = centers.shape
    precisions = {
        "full": np.array([np.eye(d) * 0.5 + 0.05] * k),
        "tied": np.eye(d) * 0.5 + 0.05,
        "diag": rng.uniform(0.3, 0.8, size=(k, d)),
        "spherical": rng.uniform(0.3, 0.8, size=k),
    }[covariance_type]
    weights = rng.uniform(1, 2, size=k)
    return dict(weights_init=weights / weights.sum(),
                means_init=centers + rng.normal(scale=1.0, size=centers.shape),
                precisions_init=precisions)
