"""The plain functions behind the plots and widgets: their drawn data respond to their inputs."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from ppo_teach import plots, widgets
from ppo_teach.history import History


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def fake_history(seed, returns):
    h = History(algo="test", seed=seed, config={})
    h.episodes.steps = [1000 * (i + 1) for i in range(len(returns))]
    h.episodes.returns = list(map(float, returns))
    return h


def test_discount_weights_follow_the_slider():
    low, high = plots.discount_weights(0.5), plots.discount_weights(0.99)
    assert low[1] == pytest.approx(0.5) and high[1] == pytest.approx(0.99)
    assert len(high) > len(low)


@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.99, 0.999])
def test_discount_weights_are_drawn_until_they_have_all_but_vanished(gamma):
    weights = plots.discount_weights(gamma)
    assert weights[-1] < 0.01 and len(weights) >= 1 / (1 - gamma)


@pytest.mark.parametrize("gamma, weight", [(0.5, "0.25"), (0.9, "0.35"), (0.99, "0.37")])
def test_the_effective_horizon_is_labelled_with_its_own_weight(gamma, weight):
    """γ^{1/(1−γ)} is at most e^{−1} and close to it only for γ near 1."""
    fig, ax = plt.subplots()
    plots.discount_weights(gamma, ax=ax)
    assert f"γ^k = {weight} (at most e^(−1)" in ax.get_legend_handles_labels()[1][0]


def test_discount_explorer_builds_a_slider_and_an_output():
    box = widgets.discount_explorer()
    slider = box.children[0].children[0]
    assert slider.value == pytest.approx(0.99) and slider.min == 0.5


def test_learning_curves_take_the_median_over_seeds():
    runs = {"a": [fake_history(0, [10, 20, 30, 40]), fake_history(1, [30, 40, 50, 60]), fake_history(2, [20, 30, 40, 50])]}
    drawn = plots.learning_curves(runs, bins=4)
    assert drawn["a"].shape == (4, 3)
    assert np.nanmedian(drawn["a"], axis=1).tolist() == [20, 30, 40, 50]


def test_the_learning_curve_band_is_labelled_min_max():
    fig, ax = plt.subplots()
    plots.learning_curves({"a": [fake_history(0, [10, 20]), fake_history(1, [30, 40])]}, ax=ax, bins=2)
    assert "a: min–max over the 2 seeds" in ax.get_legend_handles_labels()[1]


def test_seeds_solving_at_the_same_point_are_counted_on_the_plot():
    def solved_at(seed, step, value):
        h = fake_history(seed, [10])
        h.eval_steps, h.eval_returns, h.steps_to_solve = [5_000, step], [100.0, value], step
        return h

    fig, ax = plt.subplots()
    points = plots.eval_curves([solved_at(0, 8_000, 500.0), solved_at(1, 8_000, 490.0), solved_at(2, 12_000, 480.0)], ax=ax)
    assert points == {8_000: 2, 12_000: 1}
    assert [t.get_text() for t in ax.texts] == ["2 seeds"]


def test_binned_returns_leave_empty_bins_as_nan():
    binned = plots.binned_episode_returns(fake_history(0, [10, 20, 30]), np.array([0, 1000, 2000, 2500, 3000]))
    assert binned[0] == 10 and binned[1] == 20 and np.isnan(binned[2]) and binned[3] == 30


def test_gradient_spread_measures_each_estimator_around_its_own_mean():
    rng = np.random.default_rng(0)
    samples = {"noisy": 5 + 3 * rng.standard_normal((400, 10)), "quiet": rng.standard_normal((400, 10))}
    distances = plots.gradient_spread(samples)
    # mean squared distance ≈ total variance: 10·9 and 10·1
    assert np.mean(distances["noisy"] ** 2) == pytest.approx(90, rel=0.15)
    assert np.mean(distances["quiet"] ** 2) == pytest.approx(10, rel=0.15)


def test_line_search_draws_the_quadratic_model_and_reports_the_full_steps_kl_over_delta():
    from ppo_teach.trpo import LineSearch

    search = LineSearch(accepted=True, backtracks=1, kl=0.0066, improvement=0.008,
                        fractions=[1.0, 0.8], kls=[0.0104, 0.0066], improvements=[0.01, 0.008])
    _, ax = plt.subplots()
    fractions, kls = plots.line_search(search, 0.01, ax=ax)
    assert fractions == [1.0, 0.8] and kls == [0.0104, 0.0066]
    model = next(line for line in ax.lines if line.get_label().startswith("quadratic model"))
    assert np.allclose(model.get_ydata(), model.get_xdata() ** 2 * 0.01)
    assert "accepted after 1 backtrack;" in ax.get_title() and "1.04·δ" in ax.get_title()


def test_step_size_trials_draw_kl_equals_delta_over_the_trpo_bounds_only():
    from ppo_teach.trpo import StepTrial

    trials = [StepTrial("gradient step", lr, 10 * lr, 100.0) for lr in (0.01, 100.0)]
    trials += [StepTrial("TRPO step", delta, 0.7 * delta, 200.0) for delta in (0.001, 0.1)]
    _, axes = plt.subplots(1, 3)
    plots.step_size_trials(trials, 150.0, axes=axes)
    bound = next(line for line in axes[1].lines if line.get_label() == "KL̄ = δ")
    assert list(bound.get_xdata()) == [0.001, 0.1] and list(bound.get_ydata()) == [0.001, 0.1]
    trpo_steps = next(line for line in axes[2].lines if line.get_label() == "TRPO step, size = δ")
    assert np.allclose(trpo_steps.get_xdata(), [0.0007, 0.07]) and list(trpo_steps.get_ydata()) == [200.0, 200.0]


def test_update_stat_histogram_counts_every_update_of_every_seed():
    from ppo_teach.history import History

    histories = []
    for seed, values in ((0, [0.7, 1.0, 1.3]), (1, [0.9, 1.1])):
        h = History(algo="trpo", seed=seed, config={})
        h.updates = [{"step": 1000 * (i + 1), "kl_over_delta": v} for i, v in enumerate(values)]
        histories.append(h)
    _, ax = plt.subplots()
    edges = plots.update_stat_histogram(histories, "kl_over_delta", ax=ax, bound=1.0)
    assert edges[0] == 0.7 and edges[-1] == 1.3
    assert sum(patch.get_height() for patch in ax.patches) == 5


def test_update_stat_draws_a_band():
    h = History(algo="ppo", seed=0, config={})
    h.log_update(1000, {"kl_after": 0.01})
    ax = plt.subplots()[1]
    plots.update_stat([h], "kl_after", ax=ax, band=(0.003, 0.011), band_label="measured range")
    assert any(p.get_label() == "measured range" for p in ax.patches)


def test_ppo_dashboard_shades_the_measured_healthy_ranges():
    from ppo_teach import ppo

    h = History(algo="ppo", seed=0, config={"variant": "clip", "clip_eps": 0.2})
    for step in (1000, 2000):
        h.log_update(step, {"clip_fraction": 0.1, "zero_grad_fraction": 0.07, "clip_fraction_after": 0.12, "kl_after": 0.01,
                            "approx_kl": 0.008, "approx_kl_k1": 0.009, "explained_variance": 0.5, "entropy": 0.6})
    h.distributions["ratio"] = [[0.9, 1.1], [0.7, 1.4]]
    axes = list(plt.subplots(2, 3)[1].flat)
    drawn = plots.ppo_dashboard(h, axes=axes)
    assert drawn["zero_grad_fraction"].tolist() == [0.07, 0.07] and drawn["kl_after"].tolist() == [0.01, 0.01]
    for ax in (axes[1], axes[2], axes[3]):  # clip fraction, KL after, explained variance
        assert any(plots.HEALTHY_LABEL in p.get_label() for p in ax.patches)
    # A run whose loss does not clip is measured against the reference range, with no band.
    h.config = {"variant": "kl_penalty", "clip_eps": 0.2}
    axes = list(plt.subplots(2, 3)[1].flat)
    plots.ppo_dashboard(h, axes=axes)
    assert "does not clip" in axes[1].get_title() and str(1 + ppo.REFERENCE_EPS) in axes[1].get_title()


def test_the_lab_offers_the_learning_rates_its_text_asks_for():
    box = widgets.ppo_lab(total_steps=1_000)
    lr = next(c for c in box.children[0].children if c.description == "lr")
    assert 3e-3 in [value for _, value in lr.options] and lr.value == 1e-3


def test_solve_comparison_fills_the_seeds_that_meet_gymnasiums_criterion_too():
    from ppo_teach.bench import Result

    rows = [Result("ppo", 0, 10_000, 2.0, 500.0), Result("ppo", 1, 15_000, 3.0, 300.0), Result("ppo", 2, None, 9.0, 20.0)]
    axes = plt.subplots(1, 2)[1]
    assert plots.solve_comparison({"ppo": rows}, axes=axes) == {"ppo": [10_000, 15_000, None]}
    dots = [line for line in axes[0].lines if line.get_marker() in ("o", "x")]
    assert [line.get_markerfacecolor() == "none" for line in dots] == [False, True, True]
    assert [line.get_markerfacecolor() == "none" for line in axes[1].lines if line.get_marker() in ("o", "x")] == [False, True, True]
    assert axes[1].get_title()


def test_solve_comparison_draws_median_bars_on_both_panels():
    from ppo_teach.bench import Result

    rows = [Result("ppo", 0, 10_000, 2.0, 500.0), Result("ppo", 1, 15_000, 3.0, 300.0), Result("ppo", 2, 20_000, 9.0, 20.0)]
    axes = plt.subplots(1, 2)[1]
    plots.solve_comparison({"ppo": rows}, axes=axes)
    (steps_bar,), (seconds_bar,) = axes[0].collections, axes[1].collections
    assert steps_bar.get_segments()[0][0][1] == 15_000 and seconds_bar.get_segments()[0][0][1] == 3.0


def test_a_seed_evaluated_once_is_drawn_as_a_visible_marker():
    """Fast mode evaluates each run once: a line through one point drew nothing at all."""
    once, often = History("ppo", 0, {}), History("ppo", 1, {})
    once.eval_steps, once.eval_returns = [5_000], [120.0]
    often.eval_steps, often.eval_returns = [5_000, 10_000], [120.0, 300.0]
    ax = plt.subplots()[1]
    plots.eval_curves([once, often], ax=ax)
    single, several = ax.lines[:2]
    assert single.get_marker() == "o" and len(single.get_xdata()) == 1
    assert several.get_marker() in ("None", "", None)  # full mode's curves are drawn as before


def test_solve_comparison_without_a_solved_seed_has_no_meaningless_steps_axis():
    """Fast mode's runs solve nothing: the steps axis was scaled from 0 to 1.15 'steps'."""
    from ppo_teach.bench import Result

    axes = plt.subplots(1, 2)[1]
    plots.solve_comparison({"reinforce": [Result("reinforce", 0, None, 1.0, 30.0)], "ppo": [Result("ppo", 0, None, 2.0, 40.0)]}, axes=axes)
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["not solved"]
    crosses = [line for line in axes[0].lines if line.get_marker() == "x"]
    assert len(crosses) == 2 and all(line.get_ydata()[0] == axes[0].get_yticks()[0] for line in crosses)


def test_solve_comparison_labels_do_not_overlap():
    """Notebook 03's long group names ran into each other under the steps axis."""
    from ppo_teach.bench import Result

    names = ["defaults", "value clipping on", "one gradient norm over both networks"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
    plots.solve_comparison({name: [Result("ppo", 0, 10_000, 2.0)] for name in names}, axes=axes)
    fig.tight_layout()
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in axes[0].get_xticklabels()]
    assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))
