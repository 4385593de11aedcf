"""PPO: the clipped surrogate's six cases, KL estimators, the adaptive KL coefficient, config
errors, the update's statistics, the widgets' functions, and the full-budget solve claim."""
import math
import statistics

import ipywidgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch.distributions import Categorical

from ppo_teach import grid, plots, ppo, widgets
from ppo_teach.advantages import gae
from ppo_teach.envs import make_vec_env
from ppo_teach.errors import ConfigError
from ppo_teach.history import History
from ppo_teach.kl import AdaptiveKLCoefficient
from ppo_teach.losses import approx_kl_k1, approx_kl_k3, clip_fraction, clipped_surrogate, clipped_value_loss
from ppo_teach.nets import CategoricalPolicy, ValueFunction
from ppo_teach.ppo import PPOConfig
from ppo_teach.rollout import Collector, record_episode

EPS = 0.2


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize(
    "advantage, ratio, value, grad",
    [
        # Â > 0: below and inside the range the unclipped term r·Â is the min; above 1 + ε the
        # clipped (constant) term is, and the gradient vanishes.
        (1.0, 0.5, 0.5, 1.0),
        (1.0, 1.1, 1.1, 1.0),
        (1.0, 1.5, 1.0 + EPS, 0.0),
        # Â < 0: below 1 − ε the clipped term is the min and the gradient vanishes; inside and
        # above, the unclipped term is, and the gradient is Â.
        (-1.0, 0.5, -(1.0 - EPS), 0.0),
        (-1.0, 0.9, -0.9, -1.0),
        (-1.0, 1.5, -1.5, -1.0),
    ],
)
def test_clipped_surrogate_matches_the_papers_six_cases(advantage, ratio, value, grad):
    r = torch.tensor([ratio], dtype=torch.float64, requires_grad=True)
    objective = clipped_surrogate(torch.log(r), torch.zeros(1, dtype=torch.float64), torch.tensor([advantage], dtype=torch.float64), EPS)
    objective.backward()
    assert objective.item() == pytest.approx(value)
    assert r.grad.item() == grad  # exactly zero where the clipped term is active


def test_clipped_surrogate_with_infinite_eps_is_the_unclipped_surrogate():
    logp, logp_old, adv = torch.randn(50), torch.randn(50), torch.randn(50)
    assert torch.allclose(clipped_surrogate(logp, logp_old, adv, math.inf), (torch.exp(logp - logp_old) * adv).mean())


def test_clipped_surrogate_takes_any_shape_and_a_mask():
    logp, logp_old, adv = torch.randn(3, 4, 5), torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    mask = torch.rand(3, 4, 5) > 0.5
    expected = clipped_surrogate(logp[mask], logp_old[mask], adv[mask], EPS)
    assert torch.allclose(clipped_surrogate(logp, logp_old, adv, EPS, mask), expected)


def test_clip_fraction_counts_ratios_outside_the_range():
    r = torch.tensor([0.5, 0.9, 1.0, 1.1, 1.3])
    assert clip_fraction(torch.log(r), torch.zeros(5), EPS).item() == pytest.approx(2 / 5)


def test_clipped_value_loss_is_pessimistic():
    # V moved from 0 to 1 towards a target of 2 with ε = 0.2: the clipped prediction 0.2 is further
    # from the target, so its larger loss (1.8² = 3.24) is used, and it has no gradient in V.
    values = torch.tensor([1.0], requires_grad=True)
    loss = clipped_value_loss(values, torch.tensor([0.0]), torch.tensor([2.0]), EPS)
    loss.backward()
    assert loss.item() == pytest.approx(3.24) and values.grad.item() == 0.0


def test_k1_and_k3_estimate_the_exact_kl_in_expectation():
    torch.manual_seed(0)
    old, new = Categorical(probs=torch.tensor([0.5, 0.3, 0.2])), Categorical(probs=torch.tensor([0.3, 0.3, 0.4]))
    exact = torch.distributions.kl_divergence(old, new).item()
    actions = old.sample((400_000,))
    logp_old, logp_new = old.log_prob(actions), new.log_prob(actions)
    assert approx_kl_k1(logp_new, logp_old).item() == pytest.approx(exact, rel=0.03)
    assert approx_kl_k3(logp_new, logp_old).item() == pytest.approx(exact, rel=0.03)
    # k3's samples are never negative, and for this pair (r ≤ 2) vary less than k1's.
    k1_samples, log_ratio = logp_old - logp_new, logp_new - logp_old
    k3_samples = torch.expm1(log_ratio) - log_ratio
    assert (k3_samples >= 0).all() and (k1_samples < 0).any()
    assert k3_samples.var() < k1_samples.var()


def test_gae_is_the_lambda_weighted_mix_of_k_step_estimators():
    """Â_t = Σ_k (1 − λ)λ^(k−1) Â_t^(k), the weight past the episode's end on its longest estimator."""
    gen = torch.Generator().manual_seed(0)
    T, gamma, lam = 7, 0.9, 0.8
    rewards, values = torch.rand(T, 1, generator=gen, dtype=torch.float64), torch.rand(T, 1, generator=gen, dtype=torch.float64)
    next_values = torch.cat([values[1:], torch.zeros(1, 1, dtype=torch.float64)])
    terminated = torch.zeros(T, 1, dtype=torch.bool)
    terminated[-1] = True
    ends = terminated.clone()
    adv = gae(rewards, values, next_values, terminated, ends, gamma, lam)
    for t in range(T):
        horizon = T - t
        k_step = [sum(gamma**l * rewards[t + l, 0] for l in range(k)) + gamma**k * (next_values[t + k - 1, 0] if t + k < T else 0) - values[t, 0]
                  for k in range(1, horizon + 1)]
        weights = [(1 - lam) * lam ** (k - 1) for k in range(1, horizon)] + [lam ** (horizon - 1)]
        assert adv[t, 0].item() == pytest.approx(sum(w * a for w, a in zip(weights, k_step)).item())


@pytest.mark.parametrize("measured, expected_beta", [(0.001, 0.5), (0.01, 1.0), (0.014, 1.0), (0.02, 2.0)])
def test_adaptive_kl_coefficient_moves_the_right_way(measured, expected_beta):
    assert AdaptiveKLCoefficient(beta=1.0, target=0.01).update(measured) == expected_beta


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"clip_eps": 0.0}, ["PPOConfig.clip_eps = 0.0", "0 < clip_eps", "math.inf"]),
        ({"clip_eps": -0.1}, ["clip_eps"]),
        ({"update_epochs": 0}, ["PPOConfig.update_epochs = 0", "1 ≤ update_epochs"]),
        ({"num_minibatches": 3}, ["num_minibatches = 3 does not divide", "1000", "e.g. 4"]),
        ({"lam": 1.5}, ["PPOConfig.lam = 1.5", "0 ≤ lam ≤ 1"]),
        ({"lam": -0.1}, ["lam"]),
        ({"variant": "adaptive"}, ["'clip' or 'kl_penalty'"]),
        ({"target_kl": -1.0}, ["target_kl", "None"]),
        ({"max_grad_norm": 0.0}, ["max_grad_norm"]),
    ],
)
def test_bad_config_values_give_clear_errors(overrides, words):
    with pytest.raises(ConfigError) as err:
        PPOConfig(**overrides)
    for word in words:
        assert word in str(err.value)


def test_no_clipping_is_a_valid_setting():
    assert PPOConfig(clip_eps=math.inf).clip_eps == math.inf


SHORT = dict(total_steps=2_000, eval_every=1_000, eval_episodes=2)


def test_an_update_records_what_the_lab_shows():
    h = ppo.train(PPOConfig(seed=0, **SHORT), progress=False)
    u = h.updates[0]
    for key in ("clip_fraction", "zero_grad_fraction", "clip_fraction_after", "approx_kl", "approx_kl_k1", "kl_after", "entropy",
                "value_loss", "explained_variance", "policy_loss", "policy_grad_norm", "value_grad_norm", "lr"):
        assert key in u and math.isfinite(u[key])
    assert 0 <= u["zero_grad_fraction"] <= u["clip_fraction"] <= 1 and u["approx_kl"] >= 0
    assert len(h.distributions["ratio"]) == 2 and len(h.distributions["ratio"][0]) == 1_000
    assert h.updates[1]["lr"] < h.updates[0]["lr"]  # annealed


@pytest.mark.parametrize("joint", [False, True])
def test_gradient_clipping_per_network_or_joint(joint):
    """Per network (the default): each network's gradient norm ≤ max_grad_norm; joint: both together."""
    cfg = PPOConfig(seed=0, update_epochs=2, joint_grad_norm=joint, **SHORT)
    agent = ppo.PPO(cfg)
    batch = Collector(make_vec_env("CartPole-v1", cfg.num_envs, 0), agent.policy, 0).collect(cfg.steps_per_env)
    seen = []  # each network's gradient norm as the optimizer receives it
    agent.optimizer.register_step_pre_hook(lambda *_: seen.append(
        [torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in net.parameters()])).item() for net in agent.networks]))
    stats = agent.update(batch)
    joint_norms = [math.hypot(*pair) for pair in seen]
    bound = cfg.max_grad_norm * (1 + 1e-4)
    assert stats["value_grad_norm"] > cfg.max_grad_norm  # clipping is active on this batch
    if joint:
        assert max(joint_norms) <= bound
    else:
        assert max(max(pair) for pair in seen) <= bound and max(joint_norms) > bound


def test_early_stop_at_the_target_kl():
    h = ppo.train(PPOConfig(seed=0, target_kl=1e-9, **SHORT), progress=False)
    assert all(u["epochs_run"] == 1 for u in h.updates)


def test_kl_penalty_variant_adapts_beta_to_the_kl_after_each_update():
    h = ppo.train(PPOConfig(seed=0, variant="kl_penalty", total_steps=6_000, eval_every=3_000, eval_episodes=2), progress=False)
    assert h.updates[0]["kl_coef"] == 1.0
    for before, after in zip(h.updates, h.updates[1:]):
        rule = AdaptiveKLCoefficient(beta=before["kl_coef"], target=0.01)
        assert after["kl_coef"] == rule.update(before["kl_after"])


def test_clip_explorer_function_follows_its_sliders():
    wide, narrow = plots.clip_objective(0.3, 1.0), plots.clip_objective(0.1, 1.0)
    negative = plots.clip_objective(0.3, -1.0)
    assert wide["clipped"].max() == pytest.approx(1.3) and narrow["clipped"].max() == pytest.approx(1.1)
    # Â > 0: no gradient above 1 + ε; Â < 0: none below 1 − ε.
    assert np.all(wide["grad"][wide["r"] > 1.31] == 0) and np.allclose(wide["grad"][wide["r"] < 1.29], 1)
    assert np.all(negative["grad"][negative["r"] < 0.69] == 0) and np.allclose(negative["grad"][negative["r"] > 0.71], -1)


def test_gae_explorer_function_follows_its_slider():
    torch.manual_seed(0)
    episode = record_episode(make_vec_env("CartPole-v1", 1, 0), CategoricalPolicy(4, 2), seed=0)
    value_fn = ValueFunction(4)
    assert episode.ends[-1, 0] and not episode.ends[:-1].any()
    td, mc, mid = (plots.gae_lambda(episode, value_fn, 0.99, lam) for lam in (0.0, 1.0, 0.5))
    assert not np.allclose(td, mc) and not np.allclose(mid, td) and not np.allclose(mid, mc)


def test_lab_function_follows_its_sliders():
    clipped = ppo.train(ppo.lab_config(clip_eps=0.05, total_steps=2_000), progress=False)
    unclipped = ppo.train(ppo.lab_config(variant="no clipping (ε = ∞)", total_steps=2_000), progress=False)
    drawn_clipped, drawn_unclipped = plots.ppo_dashboard(clipped), plots.ppo_dashboard(unclipped)
    assert drawn_clipped["clip_fraction"].mean() > 0 and drawn_clipped["zero_grad_fraction"].mean() > 0
    # Without clipping no sample loses its gradient, and the ratios are measured against [0.8, 1.2].
    assert drawn_unclipped["zero_grad_fraction"].max() == 0 and drawn_unclipped["clip_fraction"].mean() > 0
    assert unclipped.config["clip_eps"] == math.inf and PPOConfig(clip_eps=math.inf).range_eps == ppo.REFERENCE_EPS
    with pytest.raises(ConfigError, match="lab's"):
        ppo.lab_config(variant="trpo")


def test_the_labs_eps_slider_is_disabled_for_the_variants_that_ignore_it():
    box = widgets.ppo_lab(total_steps=1_000)
    controls = [c for row in box.children[:2] for c in row.children]
    eps, variant = (next(c for c in controls if c.description == d) for d in ("ε", "variant"))
    for name in ppo.LAB_VARIANTS:
        variant.value = name
        assert eps.disabled == (name != "clip"), name


def test_the_labs_eps_slider_is_disabled_for_no_clipping_from_the_start():
    box = widgets.ppo_lab(total_steps=1_000, variant="no clipping (ε = ∞)")
    eps, variant = lab_controls(box)["ε"], lab_controls(box)["variant"]
    assert eps.disabled
    variant.value = "clip"
    assert not eps.disabled
    with pytest.raises(ConfigError, match="lab's"):
        widgets.ppo_lab(variant="trpo")


def lab_controls(box) -> dict:
    """The lab's controls and its button, by description."""
    return {c.description: c for row in box.children[:2] for c in row.children}


def test_the_lab_redraws_its_dashboard_while_it_trains_with_every_control_disabled(monkeypatch):
    drawn = []

    def record(history, total_steps):
        drawn.append((len(history.updates), [c.disabled for c in lab_controls(box).values()]))
        return plt.figure()

    monkeypatch.setattr(widgets, "lab_figure", record)
    box = widgets.ppo_lab(total_steps=3_000)
    controls = lab_controls(box)
    next(c for c in controls.values() if isinstance(c, ipywidgets.Button)).click()
    assert [updates for updates, _ in drawn] == [1, 2, 3]  # live: after every update of this short run
    assert all(all(states) for _, states in drawn)
    assert not any(c.disabled for c in controls.values())


def test_the_lab_gives_its_controls_back_after_a_run_that_raises(monkeypatch):
    failed = []

    def fail(cfg, callback):
        failed.append(cfg.clip_eps)
        raise RuntimeError("training failed")  # the button's dispatcher logs it (a notebook shows it)

    monkeypatch.setattr(ppo, "train", fail)
    box = widgets.ppo_lab(total_steps=3_000, variant="no clipping (ε = ∞)")
    controls = lab_controls(box)
    next(c for c in controls.values() if isinstance(c, ipywidgets.Button)).click()
    assert failed == [math.inf]
    assert [name for name, c in controls.items() if c.disabled] == ["ε"]  # ε stays off: "no clipping" ignores it


def test_the_labs_figure_says_how_far_the_run_is():
    h = History(algo="ppo", seed=0, config={"variant": "clip", "clip_eps": 0.2})
    h.log_update(2_000, {"clip_fraction": 0.1, "zero_grad_fraction": 0.07, "clip_fraction_after": 0.12, "kl_after": 0.01, "approx_kl": 0.008,
                         "approx_kl_k1": 0.009, "explained_variance": 0.5, "entropy": 0.6, "ratio": torch.tensor([0.9, 1.1])})
    fig = widgets.lab_figure(h, total_steps=20_000)
    assert fig._suptitle.get_text() == "after 2,000 of 20,000 environment steps (1 update)" and len(fig.axes) == 6


def test_the_ablation_costs_show_no_nan_when_the_defaults_do_not_solve():
    """Fast mode's ablation printed +nan on every row: inf − inf when neither the defaults nor a variant solved."""
    from ppo_teach.bench import Result, extra_steps, extra_steps_table

    unsolved = {"defaults": [Result("ppo", 0, None, 1.0)], "one epoch per batch": [Result("ppo", 0, None, 1.0)]}
    assert extra_steps(unsolved) == {"one epoch per batch": None}
    assert "nan" not in extra_steps_table(unsolved) and "0 of 1 seeds" in extra_steps_table(unsolved)
    solved = {"defaults": [Result("ppo", 0, 5_000, 1.0)], "slow": [Result("ppo", 0, 15_000, 1.0)], "never": [Result("ppo", 0, None, 1.0)]}
    assert extra_steps(solved) == {"slow": 10_000, "never": math.inf}
    assert extra_steps_table(solved).splitlines()[1:] == ["        +inf  never", "     +10,000  slow"]


@pytest.mark.slow
def test_ppo_solves_cartpole_on_5_seeds_within_the_benchmark_limits(full_mode):
    histories = grid.train_runs(ppo.train, [PPOConfig(seed=s, stop_when_solved=True) for s in range(5)], progress=False)
    steps = [h.steps_to_solve for h in histories]
    assert all(s is not None and s <= 50_000 for s in steps), steps
    assert statistics.median(steps) <= 15_000, steps


@pytest.mark.slow
def test_without_clipping_the_kl_per_update_explodes_and_the_lab_run_fails(full_mode):
    """Notebook 04's comparison: 40 epochs at lr 3e-3 for 20,000 steps, with and without clipping."""
    variants = ("clip", "no clipping (ε = ∞)", "adaptive KL penalty")
    every = grid.train_runs(ppo.train, {
        (seed, variant): ppo.lab_config(update_epochs=40, lr=3e-3, variant=variant, seed=seed, total_steps=20_000)
        for seed in (0, 1) for variant in variants
    }, progress=False)
    for seed in (0, 1):
        runs = {variant: every[seed, variant] for variant in variants}
        kl = {variant: h.series("kl_after")[1].mean() for variant, h in runs.items()}
        assert kl["no clipping (ε = ∞)"] > 10 * kl["clip"], kl
        assert runs["clip"].solved and not runs["no clipping (ε = ∞)"].solved
        assert kl["adaptive KL penalty"] < 3 * runs["adaptive KL penalty"].config["kl_target"], kl


@pytest.mark.slow
def test_the_dashboards_healthy_ranges_are_the_defaults_measured_ones(full_mode):
    """plots.HEALTHY_RANGES: 10th–90th percentiles over the updates of the lab's default run (20,000 steps) on
    seeds 0–4; for explained variance, over the updates until each run's solve point."""
    histories = grid.train_runs(ppo.train, [ppo.lab_config(seed=seed, total_steps=20_000) for seed in range(5)], progress=False)
    assert all(h.solved for h in histories)
    for key, (low, high) in plots.HEALTHY_RANGES.items():
        last = (lambda h: h.steps_to_solve) if key in plots.HEALTHY_UNTIL_SOLVED else (lambda h: math.inf)
        values = np.concatenate([v[s <= last(h)] for h in histories for s, v in [h.series(key)]])
        # The constants are the measured percentiles to two significant digits.
        assert np.percentile(values, 10) == pytest.approx(low, rel=0.1), key
        assert np.percentile(values, 90) == pytest.approx(high, rel=0.1), key
