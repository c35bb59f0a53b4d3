"""MobileNet v1: architecture, exact cost vs the paper, budget optimiser, model, CLI."""

import numpy as np
import pytest

from effai_fast.mobilenet import (
    PAPER_TABLE2,
    PAPER_TABLE6,
    PAPER_TABLE7,
    cost,
    fit_accuracy_model,
    load_mobilenet,
    mobilenet_v1,
    optimal_multipliers,
    scaled_channels,
)

# ----------------------------------------------------------------------------- cost model


@pytest.mark.parametrize("alpha, acc, macs, params", PAPER_TABLE6)
def test_table6(alpha, acc, macs, params):
    c = cost(alpha, 224)
    assert round(c.macs / 1e6) == macs
    digits = 2 if params < 1 else 1
    assert round(c.params / 1e6, digits) == params


@pytest.mark.parametrize("res, acc, macs, params", PAPER_TABLE7)
def test_table7(res, acc, macs, params):
    c = cost(1.0, res)
    if res == 160:
        # exact count 290.68 M; the paper prints 290 (TensorFlow's model zoo: 291)
        assert c.macs == 290_675_200
        assert abs(c.macs / 1e6 - macs) < 1
    else:
        assert round(c.macs / 1e6) == macs
    assert round(c.params / 1e6, 1) == params


def test_exact_counts_and_table2():
    c = cost(1.0, 224)
    assert c.macs == 568_740_352
    assert c.weights == 4_209_088
    assert c.params == 4_231_976  # weights + 1000 FC biases + 2 x 10 944 BN scales/shifts
    assert len([layer for layer in c.layers if layer.kind == "Conv DW 3x3"]) == 13
    assert len([layer for layer in c.layers if layer.kind == "Conv 1x1"]) == 13
    by = c.by_type()
    for kind, (pm, pp) in PAPER_TABLE2.items():
        assert round(by[kind]["weights_pct"], 2) == pp
        if kind != "Conv 3x3":  # the paper's 1.19 % is a misprint for 1.91 %
            assert round(by[kind]["macs_pct"], 2) == pm
    assert round(by["Conv 3x3"]["macs_pct"], 2) == 1.91
    assert sum(v["macs_pct"] for v in by.values()) == pytest.approx(100.0)


def test_architecture_shapes_and_rounding():
    c = cost(1.0, 224)
    assert c.layers[0].out_shape == (112, 112, 32)
    assert c.layers[-2].out_shape == (7, 7, 1024)
    # the last depthwise is stride 1 (Table 1's "s2" at 7x7 is a typo)
    assert c.layers[-3].in_shape == (7, 7, 1024) and c.layers[-3].out_shape == (7, 7, 1024)
    assert scaled_channels(32, 0.75) == 24 and scaled_channels(32, 0.3) == 10
    assert scaled_channels(8, 0.0625) == 1 and scaled_channels(3, 0.5) == 2
    small = cost(0.25, 28, 10, 1)
    assert small.layers[-2].out_shape == (1, 1, 256)
    assert "total" in small.table() and "Conv 1x1" in str(small.by_type())


@pytest.mark.parametrize("kwargs, exc", [
    ({"alpha": 0.0}, ValueError), ({"alpha": 1.5}, ValueError), ({"alpha": -1}, ValueError),
    ({"alpha": float("nan")}, ValueError), ({"resolution": 0}, ValueError),
    ({"resolution": 224.0}, TypeError), ({"num_classes": 0}, ValueError),
])
def test_cost_bad_input(kwargs, exc):
    with pytest.raises(exc):
        cost(**kwargs)


# ----------------------------------------------------------------------------- budget


def test_ideal_closed_form_is_fourth_root():
    s = optimal_multipliers(125, method="ideal", base_macs=500, alpha_range=(0.1, 1),
                            rho_range=(0.1, 1))
    assert s.alpha == pytest.approx(0.70710678, abs=1e-8)
    assert s.rho == pytest.approx(0.70710678, abs=1e-8)
    assert s.macs == pytest.approx(125.0, rel=1e-12)
    # the often-quoted square root satisfies alpha*rho = B/C and costs only a quarter
    wrong = (125 / 500) ** 0.5
    assert 500 * wrong ** 4 == pytest.approx(31.25)


def test_accuracy_model_fits_paper():
    m = fit_accuracy_model()
    assert m.rmse < 0.3
    assert m(1.0, 1.0) == pytest.approx(70.6, abs=0.3)
    assert m(0.25, 1.0) == pytest.approx(50.6, abs=0.5)
    assert m(1.0, 128 / 224) == pytest.approx(64.4, abs=0.5)
    ga, gr = m.gradient(0.5, 0.8)
    assert ga > 0 and gr > 0
    three = fit_accuracy_model([(1, 1, 70), (0.5, 1, 60), (1, 0.5, 62)])
    assert three.p == 1.0 and three(0.5, 1) == pytest.approx(60, abs=1e-6)
    with pytest.raises(ValueError, match="at least 3"):
        fit_accuracy_model([(1, 1, 70), (0.5, 1, 60)])
    with pytest.raises(ValueError, match="shape"):
        fit_accuracy_model([(1, 1), (0.5, 1)])


@pytest.mark.parametrize("budget", [60e6, 125e6, 300e6])
def test_continuous_exact_solution(budget):
    s = optimal_multipliers(budget, method="continuous")
    assert s.macs <= budget
    assert s.macs == cost(s.alpha, s.resolution).macs
    assert s.macs > 0.97 * budget  # the budget is (nearly) used up
    model = fit_accuracy_model()
    # no network of the exact-count grid that fits is more accurate
    for side in range(128, 225, 8):
        for a in np.linspace(0.25, 1, 16):
            if cost(a, side).macs <= budget:
                assert model(a, side / 224) <= s.accuracy + 1e-9
    a_c, r_c = s.continuous
    assert s.lagrange_multiplier > 0
    # KKT: the continuous optimum balances marginal accuracy against marginal cost
    assert 0.25 <= a_c <= 1 and 128 / 224 - 1e-9 <= r_c <= 1


def test_menu_and_user_accuracy():
    s = optimal_multipliers(125e6, method="menu")
    feasible = [(a, r) for a in (0.25, 0.5, 0.75, 1) for r in (128, 160, 192, 224)
                if cost(a, r).macs <= 125e6]
    assert (s.alpha, s.resolution) in feasible
    assert len(s.candidates) == len(feasible)
    # a user model that only values width picks the widest network that fits
    s2 = optimal_multipliers(125e6, method="menu", accuracy=lambda a, r: a + 1e-3 * r)
    assert s2.alpha == max(a for a, _ in feasible)
    # fitted to user points
    pts = [(1, 1, 90), (0.5, 1, 85), (1, 0.5, 80), (0.5, 0.5, 74), (0.25, 1, 78),
           (0.75, 0.75, 85)]
    s3 = optimal_multipliers(100e6, accuracy=pts)
    assert s3.macs <= 100e6 and s3.accuracy > 70


def test_base_resolution_small_inputs():
    """rho relative to 28x28 (Fashion-MNIST): brute force over the exact-count grid."""
    def acc(a, r):  # a model that only depends on rho through side / 28
        return 90 - 3 * (a ** -1 - 1) - 4 * (r ** -1.5 - 1)

    kw = {"num_classes": 10, "in_channels": 1, "base_resolution": 28}
    alphas, sides = (0.25, 0.5, 0.75, 1.0), (16, 22, 28)
    budget = 2.0e6
    s = optimal_multipliers(budget, method="menu", accuracy=acc, alphas=alphas,
                            resolutions=sides, **kw)
    fits = [(acc(a, r / 28), a, r) for a in alphas for r in sides
            if cost(a, r, 10, 1).macs <= budget]
    best = max(fits)
    assert (s.alpha, s.resolution) == (best[1], best[2])
    assert s.rho == pytest.approx(s.resolution / 28)
    assert s.accuracy == pytest.approx(best[0])
    assert s.macs == cost(s.alpha, s.resolution, 10, 1).macs
    c = optimal_multipliers(budget, method="continuous", accuracy=acc, alpha_range=(0.25, 1),
                            rho_range=(16 / 28, 1), **kw)
    assert 16 <= c.resolution <= 28 and c.macs <= budget
    assert c.rho == pytest.approx(c.resolution / 28)
    for side in range(16, 29):
        for a in np.linspace(0.25, 1, 31):
            if cost(a, side, 10, 1).macs <= budget:
                assert acc(a, side / 28) <= c.accuracy + 1e-9
    i = optimal_multipliers(0.25 * cost(1.0, 28, 10, 1).macs, method="ideal", **kw)
    assert i.alpha == pytest.approx(0.5 ** 0.5) and i.resolution == round(28 * 0.5 ** 0.5)
    # the default base (224) would read every 28x28 menu entry as rho <= 1/8
    d = optimal_multipliers(budget, method="menu", accuracy=acc, alphas=alphas,
                            resolutions=sides, num_classes=10, in_channels=1)
    assert d.rho == pytest.approx(d.resolution / 224)
    for bad in (0, -28, 2.5, "28"):
        with pytest.raises((ValueError, TypeError), match="base_resolution"):
            optimal_multipliers(budget, method="menu", accuracy=acc, alphas=alphas,
                                resolutions=sides, num_classes=10, in_channels=1,
                                base_resolution=bad)


@pytest.mark.parametrize("method", ["ideal", "continuous", "menu"])
def test_budget_bad_input(method):
    with pytest.raises(ValueError, match="below the cheapest"):
        optimal_multipliers(1e6, method=method)
    with pytest.raises(ValueError, match="exceeds"):
        optimal_multipliers(1e9, method=method)
    with pytest.raises(ValueError, match="budget"):
        optimal_multipliers(-5, method=method)
    with pytest.raises(ValueError, match="budget"):
        optimal_multipliers(float("nan"), method=method)


def test_budget_bad_method_and_ranges():
    with pytest.raises(ValueError, match="method"):
        optimal_multipliers(1e8, method="grid")
    with pytest.raises(ValueError, match="alpha_range"):
        optimal_multipliers(1e8, alpha_range=(0.5, 0.25))
    with pytest.raises(ValueError, match="alpha"):
        optimal_multipliers(1e8, method="menu", alphas=(0.5, 2.0))


# ----------------------------------------------------------------------------- model


def test_model_cost_agrees_with_cost_function():
    for alpha, res, k, cin in [(1.0, 224, 1000, 3), (0.25, 28, 10, 1), (0.5, 160, 100, 3),
                               (0.3, 37, 7, 2)]:
        net = mobilenet_v1(alpha, res, k, cin)
        ours, ref = net.cost(), cost(alpha, res, k, cin)
        assert ours.macs == ref.macs and ours.params == ref.params
        assert ours.layers == ref.layers
        assert net.n_parameters() == ref.params


def test_model_forward_shapes_and_errors(rng):
    net = mobilenet_v1(0.25, 28, 10, 1, seed=0)
    x = rng.random((4, 28, 28, 1)).astype(np.float32)
    assert net.forward(x).shape == (4, 10)
    assert net.forward(rng.random((2, 3, 3, 1))).shape == (2, 10)  # any side works
    with pytest.raises(ValueError, match="channels"):
        net.forward(rng.random((2, 28, 28, 3)))
    with pytest.raises(ValueError):
        mobilenet_v1(0.0)
    with pytest.raises(ValueError, match="activation"):
        mobilenet_v1(0.5, activation="gelu")
    with pytest.raises(ValueError, match="dropout"):
        mobilenet_v1(0.5, dropout=1.0)


def test_model_deterministic_and_save_load(tmp_path, rng):
    a = mobilenet_v1(0.25, 16, 5, 1, seed=3)
    b = mobilenet_v1(0.25, 16, 5, 1, seed=3)
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p, q)
    x = rng.random((6, 16, 16, 1)).astype(np.float32)
    y = rng.integers(0, 5, 6)
    a.fit(x, y, epochs=1, batch_size=3, verbose=0)
    path = a.save(tmp_path / "m.npz")
    c = load_mobilenet(path)
    np.testing.assert_array_equal(c.forward(x), a.forward(x))
    wrong = mobilenet_v1(0.5, 16, 5, 1)
    with pytest.raises(ValueError, match="shape mismatch"):
        wrong.load(path)


def test_cli_table_and_budget(capsys):
    from effai_fast.cli import main

    assert main(["mobilenet", "table"]) == 0
    out = capsys.readouterr().out
    assert "568.74" in out and "1.91%" in out
    assert main(["mobilenet", "budget", "--macs", "125e6"]) == 0
    out = capsys.readouterr().out
    assert "0.6847" in out and "continuous" in out and "predicted accuracy" in out
    assert main(["mobilenet", "budget", "--macs", "1e3"]) == 2
