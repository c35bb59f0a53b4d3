"""Box domains and space-filling designs (wrapping :mod:`scipy.stats.qmc`).

A :class:`Domain` is an axis-aligned box with named coordinates.  Designs are
Latin hypercubes and scrambled Sobol' sequences mapped onto it, always seeded.
A :class:`DesignSpec` describes a (possibly huge) candidate set -- domain,
count, seed -- that :func:`~effai_fast.surrogate.screen` generates chunk by chunk,
so 10**9 candidates never exist in memory at once.  Chunk ``[a, b)`` of a spec
is the same whoever generates it and however the stream is split, which is what
makes a Dask screen return exactly the serial result.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
from scipy.stats import qmc

from effai_fast._validation import as_float_array, check_int, float_dtype

__all__ = ["Domain", "DesignSpec", "latin_hypercube", "sobol", "uniform"]


class Domain:
    """An axis-aligned box ``lower <= x <= upper`` with coordinate names.

    Parameters
    ----------
    lower, upper : array_like of shape (d,)
        Finite bounds with ``lower < upper`` in every coordinate.
    names : sequence of str, optional
        One name per coordinate (default ``x0, x1, ...``).

    Raises
    ------
    ValueError
        If the bounds are not finite, have different lengths, or
        ``lower >= upper`` somewhere (the message names the coordinate).

    Examples
    --------
    >>> from effai_fast.surrogate import Domain
    >>> dom = Domain([0, -1], [1, 1], names=["a", "b"])
    >>> dom.d, dom.names
    (2, ('a', 'b'))
    """

    def __init__(self, lower, upper, names: Sequence[str] | None = None):
        lo = as_float_array(lower, "lower", dtype=np.float64, ndim=1, finite=True, copy=True)
        hi = as_float_array(upper, "upper", dtype=np.float64, ndim=1, finite=True, copy=True)
        if lo.shape != hi.shape:
            raise ValueError(
                f"lower and upper must have the same length, got {lo.size} and {hi.size}"
            )
        if names is None:
            names = [f"x{k}" for k in range(lo.size)]
        names = tuple(str(n) for n in names)
        if len(names) != lo.size:
            raise ValueError(f"names must have {lo.size} entries, got {len(names)}")
        bad = np.flatnonzero(lo >= hi)
        if bad.size:
            k = int(bad[0])
            raise ValueError(
                f"lower must be < upper in every coordinate; coordinate {k} ({names[k]!r}) "
                f"has lower={float(lo[k])!r} >= upper={float(hi[k])!r}"
            )
        lo.flags.writeable = False
        hi.flags.writeable = False
        self.lower = lo
        self.upper = hi
        self.names = names

    @property
    def d(self) -> int:
        """Number of coordinates."""
        return self.lower.size

    @property
    def width(self) -> np.ndarray:
        return self.upper - self.lower

    def from_unit(self, u: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Map points of the unit cube onto the box."""
        u = np.asarray(u, dtype=np.float64)
        return (self.lower + u * self.width).astype(dtype, copy=False)

    def to_unit(self, x) -> np.ndarray:
        """Map points of the box onto the unit cube."""
        return (np.asarray(x, dtype=np.float64) - self.lower) / self.width

    def contains(self, x) -> np.ndarray:
        """Boolean mask of the rows of ``x`` inside the box (bounds included)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        return np.all((x >= self.lower) & (x <= self.upper), axis=1)

    def clip(self, x) -> np.ndarray:
        return np.clip(x, self.lower, self.upper)

    def to_dict(self) -> dict:
        return {"lower": self.lower.tolist(), "upper": self.upper.tolist(),
                "names": list(self.names)}

    @classmethod
    def from_dict(cls, d: dict) -> Domain:
        return cls(d["lower"], d["upper"], d.get("names"))

    def __eq__(self, other) -> bool:
        return (isinstance(other, Domain) and np.array_equal(self.lower, other.lower)
                and np.array_equal(self.upper, other.upper) and self.names == other.names)

    def __repr__(self) -> str:
        return f"Domain(lower={self.lower.tolist()}, upper={self.upper.tolist()}, " \
               f"names={list(self.names)})"


def _check_domain(domain) -> Domain:
    if isinstance(domain, Domain):
        return domain
    if hasattr(domain, "domain") and isinstance(domain.domain, Domain):  # a Problem
        return domain.domain
    raise TypeError(f"domain must be a Domain, got {type(domain).__name__}")


def _engine(cls, *args, seed=None, **kwargs):
    """Build a qmc engine; scipy >= 1.15 spells the seed ``rng``, older ``seed``."""
    try:
        return cls(*args, rng=seed, **kwargs)
    except TypeError:  # pragma: no cover - scipy < 1.15
        return cls(*args, seed=seed, **kwargs)


def _seed_int(seed, name="seed"):
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return None
    return check_int(seed, name, min_value=0)


# Largest design: n * d values (2**28 float64 = 2 GiB); beyond it a MemoryError or scipy's
# unnamed "Maximum allowed dimension exceeded" would follow.
_MAX_VALUES = 2**28


def _check_n(n, d):
    return check_int(n, "n", min_value=1, max_value=max(1, _MAX_VALUES // d))


def _check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def latin_hypercube(domain: Domain, n: int, *, seed=None, optimization: str | None = None,
                    dtype=np.float64) -> np.ndarray:
    """A Latin hypercube design of ``n`` points over ``domain``.

    Parameters
    ----------
    domain : Domain
    n : int
        Number of points (>= 1).
    seed : int, numpy Generator or None
        Seed of the design (None: fresh entropy, not reproducible).
    optimization : {None, "random-cd", "lloyd"}
        Passed to :class:`scipy.stats.qmc.LatinHypercube`.
    dtype : float32 or float64

    Returns
    -------
    ndarray of shape (n, d)
    """
    domain = _check_domain(domain)
    n = _check_n(n, domain.d)
    dtype = _check_dtype(dtype)
    if optimization not in (None, "random-cd", "lloyd"):
        raise ValueError(f"optimization must be None, 'random-cd' or 'lloyd', "
                         f"got {optimization!r}")
    eng = _engine(qmc.LatinHypercube, domain.d, optimization=optimization,
                  seed=_seed_int(seed))
    return domain.from_unit(eng.random(n), dtype)


def sobol(domain: Domain, n: int, *, seed=None, scramble: bool = True, start: int = 0,
          dtype=np.float64) -> np.ndarray:
    """Points ``start .. start+n-1`` of a (scrambled) Sobol' sequence over ``domain``.

    The balance properties of Sobol' points hold for powers of two; other ``n``
    are accepted without scipy's warning.  The same ``seed`` gives the same
    sequence, so ``sobol(dom, 8, seed=1, start=8)`` continues ``sobol(dom, 8, seed=1)``.
    """
    domain = _check_domain(domain)
    n = _check_n(n, domain.d)
    dtype = _check_dtype(dtype)
    # scipy's 64-bit Sobol' cannot fast-forward past 2**32 (and refuses uint64 skips), so
    # the sequence is the 30-bit one: start + n <= 2**30
    start = check_int(start, "start", min_value=0, max_value=2**30 - n)
    if not isinstance(scramble, (bool, np.bool_)):
        raise TypeError(f"scramble must be a bool, got {type(scramble).__name__}")
    bits = 30
    return domain.from_unit(_sobol_unit(domain.d, start, n, _seed_int(seed), scramble, bits),
                            dtype)


def _fast_forward(eng, start):
    """``eng.fast_forward(start)``; scipy's fails for ``bits=64`` (uint32 buffer), so there
    the skipped points are drawn and dropped, in blocks (the same O(start) work)."""
    if not start:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "balance properties ... power of 2"
        if eng.bits <= 32:
            eng.fast_forward(start)
            return
        while start:
            k = min(start, 1 << 16)
            eng.random(k)
            start -= k


def _sobol_unit(d, start, n, seed, scramble, bits):
    eng = _engine(qmc.Sobol, d, scramble=scramble, seed=seed, bits=bits)
    _fast_forward(eng, start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "balance properties ... power of 2"
        return eng.random(n)


def uniform(domain: Domain, n: int, *, seed=None, dtype=np.float64) -> np.ndarray:
    """``n`` independent uniform points over ``domain`` (numpy Generator)."""
    domain = _check_domain(domain)
    n = _check_n(n, domain.d)
    dtype = _check_dtype(dtype)
    rng = np.random.default_rng(_seed_int(seed))
    return domain.from_unit(rng.random((n, domain.d)), dtype)


_UNIFORM_BLOCK = 1 << 16


class DesignSpec:
    """A candidate set generated on the fly: ``n`` points of a design over ``domain``.

    Parameters
    ----------
    domain : Domain
    n : int
        Number of candidates (any size: only one chunk exists at a time).
    seed : int
        Seed; chunk ``[a, b)`` is the same however the stream is split.
    method : {"sobol", "uniform"}
        ``"sobol"``: scrambled Sobol' points ``0 .. n-1``;  ``"uniform"``: i.i.d.
        uniform points, block ``j`` of 65536 drawn from ``default_rng([seed, j])``.
    dtype : float32 or float64
        dtype of the generated chunks (float32 halves memory traffic when screening).
    """

    def __init__(self, domain: Domain, n: int, seed: int = 0, method: str = "sobol",
                 dtype=np.float64):
        self.domain = _check_domain(domain)
        self.n = check_int(n, "n", min_value=1)
        self.seed = check_int(seed, "seed", min_value=0)
        if method not in ("sobol", "uniform"):
            raise ValueError(f"method must be 'sobol' or 'uniform', got {method!r} "
                             "(a Latin hypercube is not defined chunk by chunk)")
        self.method = method
        self.dtype = float_dtype(dtype, "dtype")

    def generate(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start .. stop-1`` of the candidate set.

        For ``method="sobol"`` this fast-forwards a fresh engine to ``start``
        (O(start) in scipy); use :meth:`chunks` to read consecutive chunks.
        """
        start = check_int(start, "start", min_value=0)
        stop = check_int(stop, "stop", min_value=start, max_value=self.n)
        if stop == start:
            return np.empty((0, self.domain.d), dtype=self.dtype)
        if self.method == "sobol":
            bits = 30 if self.n <= 2**30 else 64
            u = _sobol_unit(self.domain.d, start, stop - start, self.seed, True, bits)
            return self.domain.from_unit(u, self.dtype)
        parts = []
        b0, b1 = start // _UNIFORM_BLOCK, (stop - 1) // _UNIFORM_BLOCK
        for b in range(b0, b1 + 1):
            rng = np.random.default_rng([self.seed, b])
            lo = max(start, b * _UNIFORM_BLOCK) - b * _UNIFORM_BLOCK
            hi = min(stop, (b + 1) * _UNIFORM_BLOCK) - b * _UNIFORM_BLOCK
            block = rng.random((hi, self.domain.d))
            parts.append(block[lo:hi])
        return self.domain.from_unit(np.concatenate(parts), self.dtype)

    def chunks(self, chunk_size: int, start: int = 0,
               stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(offset, rows)`` for consecutive chunks of ``[start, stop)``.

        The rows are those of :meth:`generate`, but produced as a stream: one
        Sobol' engine is moved to ``start`` once and then drawn from chunk after
        chunk.  (``generate(a, b)`` must fast-forward a fresh engine to ``a``,
        which scipy does in O(a) steps: a stream of 10**9 points cut into
        chunks that way costs O(n**2 / chunk_size).)
        """
        chunk_size = check_int(chunk_size, "chunk_size", min_value=1)
        start = check_int(start, "start", min_value=0, max_value=self.n)
        stop = self.n if stop is None else check_int(stop, "stop", min_value=start,
                                                       max_value=self.n)
        if self.method != "sobol":
            # uniform: every block of _UNIFORM_BLOCK rows has its own seeded stream
            for a in range(start, stop, chunk_size):
                yield a, self.generate(a, min(stop, a + chunk_size))
            return
        bits = 30 if self.n <= 2**30 else 64
        eng = _engine(qmc.Sobol, self.domain.d, scramble=True, seed=self.seed, bits=bits)
        lower, width = self.domain.lower, self.domain.width
        _fast_forward(eng, start)
        for a in range(start, stop, chunk_size):
            # (the warnings filter only around the call, never across a yield)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "balance properties ..."
                u = eng.random(min(stop, a + chunk_size) - a)
            u *= width  # in place: from_unit without temporaries
            u += lower
            yield a, u.astype(self.dtype, copy=False)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (f"DesignSpec(domain={self.domain!r}, n={self.n}, seed={self.seed}, "
                f"method={self.method!r})")


def _n_chunks(n: int, chunk: int) -> int:
    return math.ceil(n / chunk)
