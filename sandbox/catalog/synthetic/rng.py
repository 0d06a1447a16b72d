"""Counter-based randomness of the synthetic generator (shared/data/README.md §8.2).

Every draw is a pure function of ``(seed, stream name, row key)``, so any slice of rows can be
generated alone and always gets the same values. All 64-bit arithmetic wraps modulo 2^64.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MUL1 = 0xBF58476D1CE4E5B9
_MUL2 = 0x94D049BB133111EB
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_TWO_POW_MINUS_53 = 2.0**-53
_BLOCK = 1 << 15  # keys per block: two uint64 buffers of 256 KiB stay in cache

Keys = NDArray[np.uint64]
Floats = NDArray[np.float64]
Indices = NDArray[np.intp]


def splitmix64(x: int) -> int:
    """The splitmix64 finaliser of one 64-bit integer."""
    z = (x + _GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * _MUL1) & MASK64
    z = ((z ^ (z >> 27)) * _MUL2) & MASK64
    return z ^ (z >> 31)


def _splitmix64_inplace(z: Keys, scratch: Keys) -> None:
    """splitmix64 applied element-wise to ``z``, in place (``scratch`` has z's shape)."""
    z += np.uint64(_GAMMA)
    np.right_shift(z, np.uint64(30), out=scratch)
    z ^= scratch
    z *= np.uint64(_MUL1)
    np.right_shift(z, np.uint64(27), out=scratch)
    z ^= scratch
    z *= np.uint64(_MUL2)
    np.right_shift(z, np.uint64(31), out=scratch)
    z ^= scratch


def stream_id(name: str) -> int:
    """64-bit FNV-1a of the ASCII stream name."""
    h = _FNV_OFFSET
    for byte in name.encode("ascii"):
        h = ((h ^ byte) * _FNV_PRIME) & MASK64
    return h


@lru_cache(maxsize=1024)
def _stream_seed(seed: int, name: str) -> int:
    return splitmix64((seed & MASK64) ^ stream_id(name))


def uniform_scalar(seed: int, name: str, key: int) -> float:
    """``U(name, key)`` of one key: a double in [0, 1)."""
    return (splitmix64(_stream_seed(seed, name) ^ (key & MASK64)) >> 11) * _TWO_POW_MINUS_53


def uniform(seed: int, name: str, keys: Keys) -> Floats:
    """``U(name, key)`` for every key: doubles in [0, 1) with 53 random bits.

    Works through the keys in cache-sized blocks, which is several times faster than whole-array
    passes for millions of keys.
    """
    stream = np.uint64(_stream_seed(seed, name))
    out = np.empty(len(keys), dtype=np.float64)
    z_buffer = np.empty(min(len(keys), _BLOCK), dtype=np.uint64)
    scratch_buffer = np.empty_like(z_buffer)
    for start in range(0, len(keys), _BLOCK):
        block = keys[start : start + _BLOCK]
        z = z_buffer[: len(block)]
        np.bitwise_xor(block, stream, out=z)
        _splitmix64_inplace(z, scratch_buffer[: len(block)])
        z >>= np.uint64(11)
        np.multiply(z, _TWO_POW_MINUS_53, out=out[start : start + len(block)], casting="unsafe")
    return out


def normal(seed: int, name: str, keys: Keys) -> Floats:
    """Box-Muller standard normal from the streams ``name.n1`` and ``name.n2``."""
    radius = uniform(seed, name + ".n1", keys)
    np.subtract(1.0, radius, out=radius)
    np.log(radius, out=radius)
    radius *= -2.0
    np.sqrt(radius, out=radius)
    angle = uniform(seed, name + ".n2", keys)
    angle *= 2.0 * np.pi
    np.cos(angle, out=angle)
    radius *= angle
    return radius


def categorical_cdf(weights: NDArray[np.float64] | list[float]) -> Floats:
    """``cumsum(w) / sum(w)`` in float64, the sum taken left to right (so the last entry is 1.0)."""
    cumulative: Floats = np.cumsum(np.asarray(weights, dtype=np.float64))
    cumulative /= cumulative[-1]
    return cumulative


def categorical(cdf: Floats, u: Floats) -> Indices:
    """Categorical draw: the number of ``cdf`` entries that are <= u."""
    return np.searchsorted(cdf, u, side="right")


def categorical_by_class(cdfs: Floats, classes: NDArray[np.integer], u: Floats) -> Indices:
    """Categorical draw where row i uses the cdf ``cdfs[classes[i]]`` (one row of a 2-D array)."""
    out = np.empty(u.shape, dtype=np.intp)
    for cls in range(cdfs.shape[0]):
        mask = classes == cls
        out[mask] = np.searchsorted(cdfs[cls], u[mask], side="right")
    return out


def poisson_cdf(lam: float, cap: int) -> Floats:
    """F_lam(0..cap-1), summed term by term."""
    term = float(np.exp(-lam))
    total = term
    out = np.empty(cap, dtype=np.float64)
    out[0] = total
    for k in range(1, cap):
        term = term * lam / k
        total += term
        out[k] = total
    return out


def poisson_by_class(lams: list[float], classes: NDArray[np.integer], u: Floats, cap: int) -> Indices:
    """Inverse-CDF Poisson: smallest k with u < F(k), capped at ``cap``; row i uses ``lams[classes[i]]``."""
    cdfs = np.stack([poisson_cdf(lam, cap) for lam in lams])
    return categorical_by_class(cdfs, classes, u)
