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


def test_discount_explorer_builds_a_slider_and_an_output():
    box = widgets.discount_explorer()
    slider = box.children[0].children[0]
    assert slider.value == pytest.approx(0.99) and slider.min == 0.5


def test_learning_curves_take_the_median_over_seeds():
    runs = {"a": [fake_history(0, [10, 20, 30, 40]), fake_history(1, [30, 40, 50, 60]), fake_history(2, [20, 30, 40, 50])]}
    drawn = plots.learning_curves(runs, bins=4)
    assert drawn["a"].shape == (4, 3)
    assert np.nanmedian(drawn["a"], axis=1).tolist() == [20, 30, 40, 50]


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
