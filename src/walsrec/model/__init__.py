"""The WALS estimator (orchestration) and its numba kernels (one half-step each)."""
