"""Notebook 07: each wrong version does what its docstring says, and each measured difference the
notebook claims holds with the full budget (the ``slow`` tests run ``mistake_lab`` as the notebook does)."""
import nbformat
import numpy as np
import pytest
import torch
from torch.distributions import Categorical

from ppo_teach import advantages, losses, mistake_lab, mistakes, trpo
from ppo_teach.exercises import check_spot_the_bug
from ppo_teach.exercises.spot_the_bug import PLANTED, with_planted
from ppo_teach.mistake_lab import ENTROPY_VARIANTS

NOTEBOOK = "notebooks/07_mistakes.ipynb"


# --- the wrong versions themselves ----------------------------------------------------------


def test_argmax_categorical_samples_the_most_probable_action_with_the_real_log_probs():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    greedy = mistakes.ArgmaxCategorical(logits=logits)
    assert greedy.sample().tolist() == [1, 0]
    assert greedy.sample((4,)).shape == (4, 2) and (greedy.sample((4,)) == torch.tensor([1, 0])).all()
    assert torch.allclose(greedy.log_prob(torch.tensor([1, 0])), Categorical(logits=logits).log_prob(torch.tensor([1, 0])))


def test_clamped_surrogate_lets_a_probability_move_3_5_fold_and_has_no_gradient_outside_the_clamp():
    logp_old = torch.log(torch.tensor([0.2, 0.9]))
    logp = torch.log(torch.tensor([0.7, 0.95])).requires_grad_()
    value = mistakes.clamped_logprob_surrogate(logp, logp_old, torch.ones(2), eps=0.2)
    grad = torch.autograd.grad(value, logp)[0]
    # 0.2 → 0.7 is a ratio of 3.5, kept in full; 0.95 lies above 1 − ε = 0.8: clamped, no gradient whatever Â
    assert value.item() == pytest.approx((3.5 + 0.8 / 0.9) / 2)
    assert grad[0] > 0 and grad[1] == 0


def test_clamping_the_log_probabilities_literally_leaves_no_gradient_at_all():
    """The notebook's cell: every log-probability is ≤ 0 < ε, so clamp(·, ε, 1 − ε) is the constant ε."""
    logp = torch.log(torch.tensor([0.1, 0.5, 0.9])).requires_grad_()
    literal = (torch.exp(logp.clamp(0.2, 0.8) - logp.detach()) * torch.tensor([1.0, -1.0, 1.0])).mean()
    assert torch.equal(torch.autograd.grad(literal, logp)[0], torch.zeros(3))


def test_immediate_reward_advantage_is_gae_with_gamma_zero():
    gen = torch.Generator().manual_seed(0)
    r, v, v_next = (torch.rand(6, 3, generator=gen) for _ in range(3))
    terminated = torch.rand(6, 3, generator=gen) < 0.3
    ends = terminated | (torch.rand(6, 3, generator=gen) < 0.2)
    for lam in (0.0, 0.95, 1.0):
        assert torch.allclose(mistakes.immediate_reward_advantage(r, v), advantages.gae(r, v, v_next, terminated, ends, 0.0, lam))


def test_raw_logit_log_prob_is_not_a_log_probability_and_its_gradient_is_one_hot():
    logits = torch.tensor([[2.0, 1.0, 0.5]], requires_grad=True)
    fake = mistakes.raw_logit_log_prob(logits, torch.tensor([0]))
    assert fake.item() == 2.0 > 0  # a "log-probability" above 0
    (grad,) = torch.autograd.grad(fake.sum(), logits)
    assert grad.tolist() == [[1.0, 0.0, 0.0]]
    (right,) = torch.autograd.grad(Categorical(logits=logits).log_prob(torch.tensor([0])).sum(), logits)
    assert torch.allclose(right, torch.tensor([[1.0, 0.0, 0.0]]) - torch.softmax(logits, -1))


def test_expected_raw_logit_gradient_is_the_right_one_plus_the_mean_advantage_times_pi():
    z = torch.tensor([0.3, -1.0, 0.8])
    r = torch.tensor([1.0, 2.0, 0.5])
    pi = torch.softmax(z, -1)
    right = mistake_lab.expected_score_gradient(z, r, mistake_lab.log_softmax_log_prob)
    wrong = mistake_lab.expected_score_gradient(z, r, mistakes.raw_logit_log_prob)
    assert torch.allclose(wrong, right + (pi * r).sum() * pi, atol=1e-6)
    z_leaf = z.clone().requires_grad_()
    exact = torch.autograd.grad((torch.softmax(z_leaf, -1) * r).sum(), z_leaf)[0]
    assert torch.allclose(right, exact, atol=1e-6)  # the log-derivative trick


def test_penalised_step_ignores_the_kl_while_trpo_keeps_it():
    """On one batch: a penalised step whose KL̄ exceeds δ, beside TRPO's step from the same point, within δ."""
    tb = mistake_lab.trained_batch(0, train_steps=2_000)
    problem = trpo.TrustRegionProblem(tb.policy, tb.data.obs, tb.data.actions, tb.data.logp_old, advantages.whiten(tb.data.advantages))
    theta = torch.nn.utils.parameters_to_vector(problem.params).clone()
    step = mistakes.penalised_gradient_step(problem, lr=0.5, penalty=0.01, iters=10)
    with torch.no_grad():
        penalised_kl = float(problem.kl())
    assert torch.allclose(torch.nn.utils.parameters_to_vector(problem.params), theta + step)
    torch.nn.utils.vector_to_parameters(theta, problem.params)
    agent = trpo.TRPO(trpo.TRPOConfig(max_kl=0.01))
    agent.policy = tb.policy
    stats = agent.policy_step(problem)
    assert penalised_kl > 0.01 and stats["accepted"] and stats["kl"] <= 0.01


def test_sampled_entropy_has_zero_expected_gradient_at_the_old_policy():
    """Σ_a π(a)·∇(−log π(a)) = 0: the circulating term's gradient at θ = θ_old averages to zero, unlike the entropy's."""
    z = torch.tensor([[0.5, -0.3, 1.2]], requires_grad=True)
    pi = torch.softmax(z, -1).detach()[0]
    expected = sum(pi[a] * torch.autograd.grad(mistakes.sampled_entropy(Categorical(logits=z).log_prob(torch.tensor([a])), torch.zeros(1)), z)[0]
                   for a in range(3))
    assert torch.allclose(expected, torch.zeros(1, 3), atol=1e-6)
    (entropy_grad,) = torch.autograd.grad(losses.entropy_bonus(Categorical(logits=z).entropy()), z)
    assert entropy_grad.abs().max() > 0.05
    assert mistakes.sampled_entropy(torch.tensor([-1.0, -2.0]), torch.tensor([False, True])).item() == 0.5  # the done row dropped


def test_advantage_as_value_target_returns_the_advantage():
    a, v = torch.randn(4), torch.randn(4)
    assert torch.equal(mistakes.advantage_as_value_target(a, v), a)


def test_only_notebook_07s_code_imports_the_mistakes():
    import pathlib

    package = pathlib.Path(mistakes.__file__).parent
    importers = sorted(
        str(p.relative_to(package)) for p in package.rglob("*.py")
        if any(line.startswith(("from ", "import ")) and "mistakes" in line for line in p.read_text().splitlines())
    )
    assert importers == ["exercises/spot_the_bug.py", "mistake_lab.py"], importers


# --- the spot-the-bug exercise --------------------------------------------------------------


def _notebook_loss_source() -> str:
    book = nbformat.read(NOTEBOOK, as_version=4)
    return next(c.source for c in book.cells if c.cell_type == "code" and c.source.startswith("def ppo_loss")).split("\nexercises.")[0]


def _loss_from(source: str):
    namespace = {"torch": torch}
    exec(source, namespace)
    return namespace["ppo_loss"]


FIXES = {"raw logits": ("logits.gather", "torch.log_softmax(logits, -1).gather"), "entropy sign": ("+ c_h * entropy", "- c_h * entropy")}


@pytest.mark.parametrize("fixed", [(), ("raw logits",), ("entropy sign",), ("raw logits", "entropy sign")])
def test_spot_the_bug_names_the_planted_mistakes_the_learner_fixed(fixed):
    source = _notebook_loss_source()
    for name in fixed:
        source = source.replace(*FIXES[name])
    result = check_spot_the_bug(_loss_from(source))
    assert result.passed == (len(fixed) == 2), result.message
    if len(fixed) == 2:
        assert "both planted mistakes fixed" in result.message
    elif not fixed:
        assert "both planted mistakes still in it" in result.message
    else:
        (left,) = set(PLANTED) - set(fixed)
        assert f"Fixed: {PLANTED[fixed[0]]}. Still in it: {PLANTED[left]}" in result.message


def test_spot_the_bug_notebook_cell_is_the_planted_loss():
    loss = _loss_from(_notebook_loss_source())
    gen = torch.Generator().manual_seed(3)
    logits, values, returns = torch.randn(5, 3, generator=gen), torch.randn(5, generator=gen), torch.randn(5, generator=gen)
    actions, adv = torch.randint(0, 3, (5,), generator=gen), torch.randn(5, generator=gen)
    logp_old = Categorical(logits=logits + 0.3).log_prob(actions)
    args = (logits, actions, logp_old, adv, values, returns)
    assert torch.allclose(loss(*args), with_planted(*PLANTED)(*args))


def test_spot_the_bug_reports_an_answer_that_changed_something_else():
    source = _notebook_loss_source().replace(*FIXES["raw logits"]).replace(*FIXES["entropy sign"]).replace("c_v=0.5", "c_v=1.0")
    result = check_spot_the_bug(_loss_from(source))
    assert not result.passed and result.message.startswith("your loss matches neither the right loss nor")
    assert "∂/∂values differs from the right loss's" in result.message
    entropy_dropped = _notebook_loss_source().replace(*FIXES["raw logits"]).replace(" + c_h * entropy", "")
    assert "∂/∂values matches the right loss, ∂/∂logits does not" in check_spot_the_bug(_loss_from(entropy_dropped)).message


# --- the measurements the notebook claims, full budget ----------------------------------------


def test_argmax_gradient_error_stays_while_the_sampled_one_shrinks():
    result = mistake_lab.measure_argmax_gradient()
    assert np.ptp(result.argmax_error) < 1e-6 and result.argmax_error[0] > 0.5  # the same estimate at every n, to rounding
    assert np.all(np.diff(result.sampled_error) < 0)
    # 1/√n: 4096 samples are 64 times fewer errors than one, within a factor of two
    assert 32 < result.sampled_error[0] / result.sampled_error[-1] < 128
    assert result.sampled_error[-1] < 0.1 * result.argmax_error[-1]
    assert result.argmax_error[0] < result.sampled_error[0]  # from one sample the greedy estimate is the closer one here


def test_raw_logits_converge_to_the_worse_action_unless_the_advantages_are_centred():
    result = mistake_lab.measure_raw_logits()
    right, wrong, centred = result.trajectories.values()
    assert right[-1] > 0.99 and wrong[-1] < 0.01
    assert np.allclose(centred, right, atol=1e-5)
    first = list(result.first_gradients.values())
    assert torch.allclose(first[0], torch.tensor([-0.16, 0.16]), atol=1e-6)
    assert torch.allclose(first[1], torch.tensor([0.80, 0.40]), atol=1e-6)
    # the raw-logit dynamics split at π(best) = 1/3, where π(a)·r(a) is equal for both actions
    assert list(mistake_lab.measure_raw_logits(start=(0.7, 0.3)).trajectories.values())[1][-1] < 0.01
    assert list(mistake_lab.measure_raw_logits(start=(0.6, 0.4)).trajectories.values())[1][-1] > 0.99


@pytest.mark.slow
def test_clamped_ratio_moves_further_than_the_clipped_one_in_every_seed(full_mode):
    result = mistake_lab.measure_clamped_ratio()
    clamped, clipped = result.ratios
    assert len(result.kls[clipped]) == 5
    for out_wrong, out_right, kl_wrong, kl_right, share in zip(
        result.outside(clamped), result.outside(clipped), result.kls[clamped], result.kls[clipped], result.wrong_gradient_share
    ):
        assert out_wrong > 3 * out_right and kl_wrong > 5 * kl_right and share > 0.1
    assert max(float(r.max()) for r in result.ratios[clamped]) > 2.0


@pytest.fixture(scope="module")
def ppo_runs():
    import os

    previous = os.environ.pop("PPO_TEACH_FAST", None)
    try:
        seeds, steps = mistake_lab.training_budget()
        assert (len(seeds), steps) == (3, 20_000)
        yield mistake_lab.right_ppo_runs(seeds, steps)
    finally:
        if previous is not None:
            os.environ["PPO_TEACH_FAST"] = previous


@pytest.mark.slow
def test_greedy_ppo_ends_below_ppo(full_mode, ppo_runs):
    returns = mistake_lab.measure_greedy_training(ppo_runs).final_returns()
    right, greedy = returns.values()
    assert max(greedy) < min(right), returns


@pytest.mark.slow
def test_immediate_reward_never_learns(full_mode, ppo_runs):
    comparison = mistake_lab.measure_immediate_reward(ppo_runs)
    _, wrong = comparison.runs.values()
    for h in wrong:
        first = np.mean(h.episodes.returns[:10])
        assert mistake_lab.final_return(h) < first, (first, mistake_lab.final_return(h))
    right, wrong_returns = comparison.final_returns().values()
    assert max(wrong_returns) < 30 and min(right) > 300
    for before, after in comparison.entropies("PPO, Â = r_t − V(s_t)"):
        assert after < before - 0.1, (before, after)  # the policy drifts away from uniform


@pytest.mark.slow
def test_trpo_keeps_the_kl_bound_and_the_penalty_does_not(full_mode):
    result = mistake_lab.measure_trpo_kl()
    right, strong, weak = result.runs
    assert result.kl_over_delta(right).max() <= 1.0 + 1e-9
    for label in (strong, weak):
        kl = result.kl_over_delta(label)
        assert kl.max() / kl.min() > 10, label  # more than an order of magnitude
    assert np.mean(result.kl_over_delta(weak) > 1) > 0.5 and np.mean(result.kl_over_delta(strong) > 1) < 0.1
    median_return = {label: np.median([mistake_lab.final_return(h) for h in hs]) for label, hs in result.runs.items()}
    assert median_return[strong] < median_return[right], median_return


@pytest.mark.slow
def test_the_kl_penalty_variant_adapts_beta_not_the_learning_rate(full_mode):
    history = mistake_lab.measure_penalty_coefficient().history
    _, lr = history.series("lr")
    _, beta = history.series("kl_coef")
    assert len(lr) == 20 and np.all(lr == lr[0])
    assert len(np.unique(beta)) >= 3


@pytest.mark.slow
def test_entropy_terms(full_mode):
    result = mistake_lab.measure_entropy_terms()
    none, right, exact_wrong, sampled_subtracted, circulated = ENTROPY_VARIANTS
    dh, kl = result.entropy_change, result.kls
    assert len(dh[none]) == 4
    for i in range(4):
        assert dh[right][i] > dh[none][i] > dh[exact_wrong][i]
        assert abs(dh[circulated][i] - dh[none][i]) < abs(dh[right][i] - dh[none][i])
        assert kl[circulated][i] < kl[none][i]
        assert dh[sampled_subtracted][i] < dh[none][i]  # fixing only the sign lowers the entropy


@pytest.mark.slow
def test_the_advantage_as_value_target_does_not_learn_the_return(full_mode):
    result = mistake_lab.measure_value_targets()
    right, wrong = result.explained.values()
    assert right.shape == (4, 11)
    assert np.all(right[:, -1] > 0.5) and np.all(wrong.max(1) < 0.3)
    assert max(result.scale["target Â (wrong)"]) < 0.5  # V settles at a fraction of the returns' size


def test_summary_table_renders_every_row():
    rows = [mistake_lab.Row("m", "does <x>", "w", "r")]
    table = mistake_lab.Table(rows)
    assert "&lt;x&gt;" in table._repr_html_() and "does <x>" in repr(table)
    assert rows[0]._repr_html_() == table._repr_html_()
