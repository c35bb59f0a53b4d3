"""``effai hill fit curves.csv -o fits.csv [--plot fits.png]``."""

from __future__ import annotations

import csv
import math

import numpy as np

__all__ = ["register", "read_long_csv"]


def register(subparsers) -> None:
    """Add the ``hill`` command with its ``fit`` subcommand."""
    p = subparsers.add_parser("hill", help="bulk Hill dose-response fitting",
                              description="Fit Hill curves to many dose-response curves.")
    sub = p.add_subparsers(dest="hill_command", metavar="SUBCOMMAND")
    f = sub.add_parser("fit", help="fit every curve of a long CSV (curve id, dose, response)",
                       description="Fit the Hill model to each curve of a long-format CSV "
                       "with columns curve id, dose, response (a header row naming them "
                       "'curve'/'id', 'dose'/'conc', 'response'/'y' is recognised; otherwise "
                       "the first three columns are used).")
    f.add_argument("csv", help="input CSV")
    f.add_argument("-o", "--output", required=True, help="output CSV of per-curve fits")
    f.add_argument("--plot", default=None, help="also save data and fitted curves (PNG)")
    f.add_argument("--se", choices=("hessian", "gauss-newton"), default="hessian")
    f.add_argument("--threads", type=int, default=None, help="OpenMP threads")
    f.set_defaults(func=_fit)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


_ID = ("curve", "curve_id", "id", "compound", "well", "sample")
_DOSE = ("dose", "conc", "concentration", "x")
_RESP = ("response", "y", "value", "signal", "rootl")


def read_long_csv(path):
    """Read a long CSV into (ids, dose (n, k), response (n, k)) padded with NaN."""
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: the CSV is empty")
    head = [c.strip().lower() for c in rows[0]]
    cols = (0, 1, 2)
    if not _is_number(rows[0][1] if len(rows[0]) > 1 else ""):
        def find(names, default):
            return next((head.index(n) for n in names if n in head), default)
        cols = (find(_ID, 0), find(_DOSE, 1), find(_RESP, 2))
        rows = rows[1:]
    groups: dict[str, list] = {}
    for k, r in enumerate(rows):
        if len(r) <= max(cols):
            raise ValueError(f"{path}: row {k + 2} has {len(r)} columns, need {max(cols) + 1}")
        try:
            d = float(r[cols[1]]) if r[cols[1]].strip() else math.nan
            y = float(r[cols[2]]) if r[cols[2]].strip() else math.nan
        except ValueError:
            raise ValueError(f"{path}: row {k + 2}: dose and response must be numbers, "
                             f"got {r[cols[1]]!r}, {r[cols[2]]!r}") from None
        groups.setdefault(r[cols[0]].strip(), []).append((d, y))
    ids = list(groups)
    width = max(len(v) for v in groups.values())
    dose = np.full((len(ids), width), np.nan)
    resp = np.full((len(ids), width), np.nan)
    for i, key in enumerate(ids):
        v = np.asarray(groups[key])
        dose[i, :len(v)] = v[:, 0]
        resp[i, :len(v)] = v[:, 1]
    return ids, dose, resp


def _is_number(s) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _fit(args) -> int:
    from effai_fast.hill.fit import fit

    ids, dose, resp = read_long_csv(args.csv)
    res = fit(dose, resp, se=args.se, n_threads=args.threads)
    cols = res.to_dict()
    with open(args.output, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["curve"] + list(cols))
        for i, key in enumerate(ids):
            wr.writerow([key] + [_fmt(cols[c][i]) for c in cols])
    counts = ", ".join(f"{int(np.sum(res.status == k))} {v}"
                       for k, v in {0: "converged", 1: "flat", 2: "failed"}.items())
    print(f"fitted {len(ids)} curves ({counts}) -> {args.output}")
    if args.plot:
        _plot(ids, dose, resp, res, args.plot)
        print(f"plot -> {args.plot}")
    return 0


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    v = float(v)
    return "" if math.isnan(v) else f"{v:.8g}"


def _plot(ids, dose, resp, res, path, max_panels: int = 16) -> None:
    from effai_fast._extras import require

    plt = require("matplotlib.pyplot", "effai hill fit --plot")
    k = min(len(ids), max_panels)
    ncol = min(4, k)
    nrow = int(math.ceil(k / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3 * ncol, 2.5 * nrow), squeeze=False)
    for i in range(nrow * ncol):
        ax = axes[i // ncol][i % ncol]
        if i >= k:
            ax.axis("off")
            continue
        d, y = dose[i], resp[i]
        ok = np.isfinite(d) & np.isfinite(y)
        pos = d[ok & (d > 0)]
        lo = pos.min() / 3 if pos.size else 1e-3
        hi = pos.max() * 3 if pos.size else 1.0
        xs = np.geomspace(lo, hi, 200)
        xd = np.where(d[ok] > 0, d[ok], lo)
        ax.semilogx(xd, y[ok], "o", ms=3)
        ax.semilogx(xs, res.predict(xs)[i], "-")
        ax.set_title(f"{ids[i]} ({res.status_name[i]})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
