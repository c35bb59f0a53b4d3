"""Test functions for effai_fast.ad: written once with numpy, traced by ad, also run by JAX.

Each function takes ``(x, np_like)`` so the same code runs on numpy arrays,
traced values, and ``jax.numpy`` arrays.
"""

import numpy as np


def rosen(x, xp=np):
    return xp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


# Hill residual sum: 4 parameters (bottom, top, log-ec50, slope) over fixed doses.
HILL_D = np.array([0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0])
HILL_Y = np.array([0.98, 0.97, 0.9, 0.75, 0.5, 0.22, 0.08, 0.03])


def hill_model(p, d, xp=np):
    b, t, le, h = p[0], p[1], p[2], p[3]
    return b + (t - b) / (1.0 + xp.exp(h * (xp.log(d) - le)))


def hill_rss(p, xp=np):
    r = hill_model(p, HILL_D, xp) - HILL_Y
    return xp.sum(r * r)


_rng = np.random.default_rng(1234)
MLP_W1 = _rng.normal(size=(3, 5)) * 0.7
MLP_B1 = _rng.normal(size=5) * 0.1
MLP_W2 = _rng.normal(size=5) * 0.7


def mlp(x, xp=np):
    """A 3-5-1 tanh MLP of the input (differentiated w.r.t. the input)."""
    h = xp.tanh(x @ MLP_W1 + MLP_B1)
    return xp.dot(h, MLP_W2) + 0.1 * xp.sum(x * x)


def mlp_params(w, xp=np):
    """The same MLP as a function of its flattened weights, on a fixed batch."""
    X = _rng_batch
    W1 = w[:15].reshape(3, 5)
    b1 = w[15:20]
    W2 = w[20:25]
    h = xp.tanh(X @ W1 + b1)
    out = h @ W2
    return xp.mean((out - 0.5) ** 2)


_rng_batch = np.random.default_rng(7).normal(size=(6, 3))


def kinks(x, xp=np):
    a = xp.maximum(x[0], 0.3 * x[1])
    b = xp.minimum(x[1], x[2] * x[2])
    c = xp.abs(x[2] - 0.1)
    d = xp.where(x[0] > 0, xp.log(xp.abs(x[0]) + 1.0), xp.sin(x[0]))
    return a * b + c + d * xp.cos(x[1]) + xp.sqrt(x[0] ** 2 + 1.0)


def transcendental(x, xp=np):
    return (xp.exp(0.3 * x[0]) * xp.log1p(x[1] ** 2) + xp.expm1(0.2 * x[2])
            + xp.tanh(x[0] * x[1]) / (1.5 + xp.cos(x[2])) + (x[1] ** 2 + 1.0) ** 0.7
            + 2.0 ** x[0] + 1.0 / (1.0 + xp.exp(-x[1])))


SUITE = {
    "rosen": (rosen, 6),
    "hill_rss": (hill_rss, 4),
    "mlp": (mlp, 3),
    "mlp_params": (mlp_params, 25),
    "kinks": (kinks, 3),
    "transcendental": (transcendental, 3),
}


def point(name, rng):
    """A random evaluation point away from kinks."""
    n = SUITE[name][1]
    if name == "hill_rss":
        return np.array([0.05, 1.0, 0.0, 1.2]) + 0.05 * rng.normal(size=4)
    x = rng.uniform(-1.0, 1.0, size=n)
    if name == "kinks":
        x = np.array([0.7, -0.4, 0.9]) + 0.05 * rng.normal(size=3)
    return x


# --------------------------------------------------------------------------- random programs
UNARY_SAFE = ("exp", "tanh", "sin", "cos", "sigmoid", "square", "neg", "abs", "log1p_sq",
              "sqrt_sq")
BINARY_OPS = ("add", "sub", "mul", "div_safe", "maximum", "minimum", "where")


def random_program(rng, n_in, n_ops):
    """A random straight-line program as a list of (op, args) over values 0..n_in-1."""
    prog = []
    n = n_in
    for _ in range(n_ops):
        if rng.random() < 0.4:
            op = UNARY_SAFE[rng.integers(len(UNARY_SAFE))]
            prog.append((op, (int(rng.integers(n)),), float(rng.uniform(-1, 1))))
        else:
            op = BINARY_OPS[rng.integers(len(BINARY_OPS))]
            prog.append((op, (int(rng.integers(n)), int(rng.integers(n))),
                         float(rng.uniform(-1, 1))))
        n += 1
    return prog


def run_program(prog, x, xp=np, where=None):
    vals = [x[i] for i in range(len(x))] if not isinstance(x, list) else list(x)
    where = where or xp.where
    for op, args, c in prog:
        a = vals[args[0]]
        b = vals[args[1]] if len(args) > 1 else None
        if op == "exp":
            r = xp.exp(0.3 * xp.tanh(a))
        elif op == "tanh":
            r = xp.tanh(a)
        elif op == "sin":
            r = xp.sin(a + c)
        elif op == "cos":
            r = xp.cos(a)
        elif op == "sigmoid":
            r = 1.0 / (1.0 + xp.exp(-a))
        elif op == "square":
            r = 0.5 * a * a
        elif op == "neg":
            r = -a + c
        elif op == "abs":
            r = xp.abs(a + 2.5)
        elif op == "log1p_sq":
            r = xp.log1p(a * a)
        elif op == "sqrt_sq":
            r = xp.sqrt(a * a + 1.0)
        elif op == "add":
            r = a + b
        elif op == "sub":
            r = a - c * b
        elif op == "mul":
            r = a * b
        elif op == "div_safe":
            r = a / (1.5 + xp.tanh(b))
        elif op == "maximum":
            r = xp.maximum(a, b + 3.0)
        elif op == "minimum":
            r = xp.minimum(a, b - 3.0)
        elif op == "where":
            r = where(a > -10.0, b * c, a)
        vals.append(r)
    return sum(vals[len(x):][-3:]) if len(vals) > len(x) else vals[0]
