"""Notebook 05's plots, its temperature widget and the per-token KL estimates they draw: each is a
plain function the tests call with different values."""
import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from ppo_teach.kl import exact_moments  # noqa: E402
from ppo_teach.lm import plots as lm_plots  # noqa: E402
from ppo_teach.lm.policy import evaluate, generate, kl_estimates, reference_model  # noqa: E402
from ppo_teach.lm.tiny import read_log  # noqa: E402
from ppo_teach.losses import approx_kl_k1, approx_kl_k3  # noqa: E402
from ppo_teach.widgets import temperature_explorer  # noqa: E402


def perturbed_copy(policy, sigma: float):
    copy = reference_model(policy)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in copy.parameters():
            p.add_(sigma * torch.randn(p.shape, generator=gen))
    return copy


def moved_and_estimated(loaded, n_responses: int, length: int):
    """Responses of a policy moved by noise σ = 0.01, their evaluations under it and under the
    unmoved reference, and the per-token KL estimates."""
    policy, tokenizer = loaded
    moved = perturbed_copy(policy, 0.01)
    batch = generate(moved, tokenizer, ["the movie was"] * n_responses, length, seed=0)
    with torch.no_grad():
        ev, ev_ref = evaluate(moved, batch), evaluate(reference_model(policy), batch)
    return kl_estimates(ev, ev_ref), ev, ev_ref


def test_the_next_token_bars_are_the_most_likely_tokens_and_flatten_with_temperature(loaded):
    policy, tokenizer = loaded
    cold = lm_plots.next_token_distribution(policy, tokenizer, "the movie was", temperature=0.5)
    hot = lm_plots.next_token_distribution(policy, tokenizer, "the movie was", temperature=2.0)
    assert list(cold["probs"]) == sorted(cold["probs"], reverse=True)
    assert cold["probs"].sum() + cold["others"] == pytest.approx(1.0, abs=1e-5) and cold["others"] >= 0
    assert cold["entropy"] < hot["entropy"] and cold["probs"][0] > hot["probs"][0]


def test_a_new_draw_gives_new_samples_and_the_same_draw_the_same(loaded):
    policy, tokenizer = loaded
    first = lm_plots.temperature_view(policy, tokenizer, "the movie was", 1.0, draw=0)["samples"]
    again = lm_plots.temperature_view(policy, tokenizer, "the movie was", 1.0, draw=0)["samples"]
    other = lm_plots.temperature_view(policy, tokenizer, "the movie was", 1.0, draw=1)["samples"]
    assert first == again and first != other and len(first) == 4


def test_the_widgets_button_moves_the_draw_on(loaded):
    policy, tokenizer = loaded
    box = temperature_explorer(policy, tokenizer)
    slider, button, seed = box.children[0].children
    assert slider.description == "temperature" and slider.value == 1.0 and seed.value == 0
    button.click()
    button.click()
    assert seed.value == 2  # the samples below are drawn with this seed: each click draws new ones


def test_kl_estimates_are_zero_for_identical_weights_and_the_package_estimators_per_token(loaded):
    policy, tokenizer = loaded
    reference = reference_model(policy)
    batch = generate(policy, tokenizer, ["the movie was", "the plot was"], 6, seed=0)
    with torch.no_grad():
        same = kl_estimates(evaluate(policy, batch), evaluate(reference, batch))
        moved_policy = perturbed_copy(policy, 0.01)
        moved = kl_estimates(evaluate(moved_policy, batch), evaluate(reference, batch))
        logp, logp_ref = evaluate(moved_policy, batch).logprobs, evaluate(reference, batch).logprobs
    assert all(float(getattr(same, k).abs().max()) == 0.0 for k in ("exact", "k1", "k3"))
    assert moved.k1.mean() == pytest.approx(float(approx_kl_k1(logp_ref, logp)), abs=1e-6)
    assert moved.k3.mean() == pytest.approx(float(approx_kl_k3(logp_ref, logp)), abs=1e-6)
    assert moved.exact.shape == moved.k1.shape == (2, 6) and bool((moved.exact >= 0).all())


def test_the_kl_plot_draws_the_batch_means(loaded):
    kl, _, _ = moved_and_estimated(loaded, 8, 5)
    drawn = lm_plots.kl_by_position(kl)
    for name in ("exact", "k1", "k3"):
        assert drawn[name] == pytest.approx(getattr(kl, name).mean(0).numpy(), abs=1e-6)


def test_the_loss_plot_draws_the_shipped_log():
    log = read_log()
    drawn = lm_plots.pretraining_loss(log)
    assert len(drawn) == len(log["loss_curve"]) and drawn[-1] == pytest.approx(log["loss_curve"][-1]["loss"])


def test_the_estimators_exact_spreads_are_their_moments_over_the_vocabulary(loaded):
    kl, ev, ev_ref = moved_and_estimated(loaded, 2, 3)
    p, q = torch.softmax(ev.logits[1, 2].double(), -1), torch.softmax(ev_ref.logits[1, 2].double(), -1)
    for name, estimator in (("k1", approx_kl_k1), ("k3", approx_kl_k3)):
        mean, std = exact_moments(estimator, p, q)  # one position's distribution, in float64
        assert mean == pytest.approx(float(kl.exact[1, 2]), rel=1e-3, abs=1e-6)
        assert std == pytest.approx(float(getattr(kl, f"{name}_std")[1, 2]), rel=1e-3)


@pytest.fixture(scope="module")
def short_run():
    from ppo_teach.lm.rlhf import RLHFTrainer, preset

    trainer = RLHFTrainer(preset("tiny", iterations=2, batch_size=8, minibatches=2, epochs=1, eval_every=1, eval_prompts=8))
    trainer.train(progress=False)
    return trainer


def test_the_rlhf_dashboard_draws_the_run_and_the_reward_against_kl(short_run):
    drawn = lm_plots.rlhf_dashboard(short_run.history)
    assert list(drawn["score"]) == [e["score_mean"] for e in short_run.history.iterations]
    curves = lm_plots.reward_vs_kl({"β = 0.2": short_run.history})
    kl, positive = curves["β = 0.2"]
    assert list(kl) == [e["kl"] for e in short_run.history.evaluations] and len(positive) == 3  # before, 1, 2


def test_the_live_dashboard_draws_once_then_updates_in_place(short_run, monkeypatch):
    from ppo_teach import widgets

    shown = []

    class Handle:
        def update(self, fig):
            shown.append("update")

    monkeypatch.setattr(widgets, "display", lambda fig, display_id: shown.append("display") or Handle())
    live = widgets.LiveDashboard(every=1)
    live(short_run)
    live(short_run)
    assert shown == ["display", "update"]


def test_presets_name_the_two_runs_and_refuse_others():
    from ppo_teach.errors import ConfigError
    from ppo_teach.lm.rlhf import preset

    assert preset("gpt2").model == "gpt2" and preset("gpt2").adaptive_kl and preset("tiny").beta == 0.2
    with pytest.raises(ConfigError, match="'tiny'"):
        preset("gpt-2")


def test_the_beta_widget_trains_a_run_per_press_with_the_chosen_beta():
    from ppo_teach.lm.rlhf import RLHFTrainer, preset
    from ppo_teach.widgets import beta_explorer

    made = []

    def make(beta):
        made.append((beta, choice.disabled, button.disabled))  # both off while the run trains
        if len(made) == 2:
            raise RuntimeError("no memory left")
        return RLHFTrainer(preset("tiny", beta=beta, iterations=1, batch_size=4, minibatches=1, epochs=1, eval_prompts=4))

    box = beta_explorer(make, betas=(0.0, 0.5))
    choice, button = box.children[0].children
    choice.value = 0.0
    button.click()
    button.click()  # this run fails: its error is logged (shown, in a notebook) and the controls come back
    assert made == [(0.0, True, True), (0.0, True, True)]
    assert not choice.disabled and not button.disabled


def test_the_rlhf_dashboard_of_a_beta_zero_run_has_a_beta_axis_and_evaluations_over_the_run():
    """β = 0 throughout once gave the β axis zero height; the evaluation panel of a short run was centred
    on iteration 0 alone."""
    import matplotlib.pyplot as plt

    from ppo_teach.lm.rlhf import RLHFHistory

    step = dict(score_mean=0.5, score_std=0.1, kl=2.0, beta=0.0, clip_fraction=0.2, approx_kl=0.01)
    history = RLHFHistory(iterations=[{"iteration": i, **step} for i in (1, 2, 3)],
                          evaluations=[{"iteration": i, "kl": 0.0, "positive_rate": 0.5, "fluency": 0.9} for i in (0, 3)])
    axes = list(plt.subplots(1, 4)[1])
    lm_plots.rlhf_dashboard(history, axes)
    beta_axis = next(ax for ax in axes[1].figure.axes if ax.get_ylabel() == "β")
    assert beta_axis.get_ylim() == (0.0, 1.5)
    assert axes[3].get_xlim() == axes[1].get_xlim() and axes[3].get_xlim()[1] >= 3
