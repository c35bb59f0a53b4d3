"""``effai surrogate``: run the active-learning loop on an embedded problem."""

from __future__ import annotations

import time

import numpy as np

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "surrogate", help="surrogate-model workflow (active learning on embedded problems)",
        description="Fit a surrogate on a few simulator runs, screen candidates, send the "
                    "best back to the simulator, repeat.")
    sub = p.add_subparsers(dest="surrogate_command", metavar="ACTION")
    run = sub.add_parser("run", help="optimise an embedded problem with a simulator budget")
    run.add_argument("--problem", default="branin",
                     help="borehole, otl_circuit, wing_weight, piston, hartmann6, branin, "
                          "ishigami (default: branin)")
    run.add_argument("--budget", type=int, default=60, help="simulator calls (default 60)")
    run.add_argument("--batch-size", type=int, default=4)
    run.add_argument("--n-initial", type=int, default=None)
    run.add_argument("--acquisition", choices=["ei", "ucb", "greedy"], default="ei")
    run.add_argument("--maximize", action="store_true", help="maximise instead of minimise")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--n-jobs", type=int, default=1,
                     help="simulator processes (spawn start method)")
    run.add_argument("--checkpoint", default=None, help=".npz checkpoint (resumes if present)")
    run.add_argument("--threads", type=int, default=None)
    run.set_defaults(func=_run)
    lst = sub.add_parser("problems", help="list the embedded problems")
    lst.set_defaults(func=_problems)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _problems(args) -> int:
    from effai_fast.surrogate import PROBLEMS

    for name, prob in PROBLEMS.items():
        opt = "" if prob.minimum is None else f", published minimum {prob.minimum}"
        print(f"{name:12s} d={prob.d}{opt}  [{prob.reference}]")
    return 0


def reference_optimum(problem, maximize: bool = False, seed: int = 0):
    """The published minimum, or a numerical reference (multi-start L-BFGS-B on the
    cheap formula) for problems that have none; returns (value, how)."""
    from scipy.optimize import minimize

    from effai_fast.surrogate import sobol

    if problem.minimum is not None and not maximize:
        return problem.minimum, "published"
    sign = -1.0 if maximize else 1.0
    dom = problem.domain
    X = sobol(dom, 4096, seed=seed)
    y = sign * problem(X)
    best = np.inf
    for x0 in X[np.argsort(y)[:8]]:
        res = minimize(lambda x: sign * problem(x), x0, method="L-BFGS-B",
                       bounds=list(zip(dom.lower, dom.upper, strict=True)))
        best = min(best, float(res.fun))
    return sign * best, "numerical (multi-start L-BFGS-B on the formula)"


def _run(args) -> int:
    from effai_fast.surrogate import get_problem, optimize

    prob = get_problem(args.problem)
    d = prob.d
    n_initial = args.n_initial or max(2 * (d + 1), 6)
    if args.budget < n_initial + args.batch_size:
        raise SystemExit(f"--budget must be at least n_initial + batch_size = "
                         f"{n_initial + args.batch_size}")
    n_rounds = (args.budget - n_initial) // args.batch_size
    print(f"problem {prob.name} (d={d}), budget {args.budget}: {n_initial} initial LHS + "
          f"{n_rounds} rounds x {args.batch_size}, acquisition {args.acquisition}")
    t0 = time.perf_counter()

    def report(h):
        r = h.rounds[-1]
        extra = ""
        if "n_screened" in r:
            extra = (f", screened {r['n_screened']} in {r['screen_seconds'] * 1e3:.0f} ms, "
                     f"fit {r['fit_seconds']:.2f} s")
        print(f"  round {r['round']:3d}: calls {h.n_calls:4d}, best {h.best_y:.6g}{extra}",
              flush=True)

    hist = optimize(prob, prob.domain, n_initial=n_initial, n_rounds=n_rounds,
                    batch_size=args.batch_size, acquisition=args.acquisition,
                    seed=args.seed, n_jobs=args.n_jobs, checkpoint=args.checkpoint,
                    maximize=args.maximize, n_threads=args.threads, callback=report)
    secs = time.perf_counter() - t0
    ref, how = reference_optimum(prob, args.maximize, args.seed)
    screened = sum(r.get("n_screened", 0) for r in hist.rounds)
    screen_s = sum(r.get("screen_seconds", 0.0) for r in hist.rounds)
    print(f"simulator calls: {hist.n_calls} ({hist.n_failed} failed)")
    print(f"candidates screened: {screened} at {screened / max(screen_s, 1e-9):.3g}/s")
    print(f"best found: {hist.best_y:.6g} at {np.array2string(hist.best_x, precision=5)}")
    print(f"true optimum: {ref:.6g} ({how}); gap {abs(hist.best_y - ref):.3g}")
    print(f"wall time {secs:.1f} s")
    return 0
