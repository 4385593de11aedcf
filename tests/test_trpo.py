"""TRPO: conjugate gradient, Fisher-vector products, the KL-constrained line search, config errors,
and the full-budget claims of notebook 02."""
import statistics

import pytest
import torch
from torch.nn.utils import parameters_to_vector

from ppo_teach import exercises, grid, trpo
from ppo_teach.errors import ConfigError
from ppo_teach.nets import CategoricalPolicy
from ppo_teach.trpo import TRPOConfig, TrustRegionProblem, conjugate_gradient, fisher_vector_product


def random_spd(n, seed):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(n, n, generator=g, dtype=torch.float64)
    return M @ M.T + 0.1 * torch.eye(n, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("n, seed", [(2, 0), (5, 1), (10, 2), (30, 3)])
def test_conjugate_gradient_solves_random_spd_systems(n, seed):
    A, b = random_spd(n, seed)
    x = conjugate_gradient(lambda v: A @ v, b, iters=3 * n, tol=1e-20)
    assert torch.linalg.norm(A @ x - b) < 1e-8 * torch.linalg.norm(b)
    assert torch.allclose(x, torch.linalg.solve(A, b), atol=1e-8, rtol=1e-6)


def test_conjugate_gradient_error_shrinks_in_the_a_norm_every_iteration():
    A, b = random_spd(12, 4)
    exact = torch.linalg.solve(A, b)
    errors = []
    for k in range(1, 13):
        e = conjugate_gradient(lambda v: A @ v, b, iters=k, tol=0.0) - exact
        errors.append(float(e @ A @ e))
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))


def tiny_problem(dtype=torch.float64):
    torch.manual_seed(0)
    policy = CategoricalPolicy(3, 3, hidden=(4,)).to(dtype)
    obs = torch.randn(6, 3, dtype=dtype)
    with torch.no_grad():
        dist = policy(obs)
        actions = dist.sample()
        logp = dist.log_prob(actions)
    return policy, TrustRegionProblem(policy, obs, actions, logp, torch.randn(6, dtype=dtype))


def test_fisher_vector_product_equals_the_explicit_fisher_matrix_times_v():
    policy, problem = tiny_problem()
    params = list(policy.parameters())
    F = trpo.explicit_fisher(policy, problem.obs)  # mean_s Σ_a π(a|s) score scoreᵀ, from per-sample scores
    assert torch.allclose(F, F.T) and torch.linalg.eigvalsh(F).min() > -1e-12  # symmetric, positive semi-definite
    v = torch.randn(F.shape[0], dtype=torch.float64)
    assert torch.allclose(fisher_vector_product(problem.kl, params, v, damping=0.0), F @ v, atol=1e-10)
    assert torch.allclose(fisher_vector_product(problem.kl, params, v, damping=0.5), F @ v + 0.5 * v, atol=1e-10)


def test_fisher_factor_gives_f_and_its_rank_is_at_most_states_times_actions_minus_one():
    policy, problem = tiny_problem()
    S = trpo.fisher_factor(policy, problem.obs)  # 6 states × 3 actions rows
    F = trpo.explicit_fisher(policy, problem.obs)
    assert torch.allclose(S.T @ S, F)
    assert int(torch.linalg.matrix_rank(F)) == 6 * (3 - 1) < F.shape[0]
    nonzero = torch.linalg.eigvalsh(S @ S.T)[-12:]
    assert torch.allclose(nonzero, torch.linalg.eigvalsh(F)[-12:], atol=1e-12)


@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_natural_gradient_step_sits_on_the_quadratic_trust_region_boundary_of_the_undamped_fisher(damping):
    _, problem = tiny_problem()
    direction = problem.natural_gradient(damping=damping, cg_iters=100)
    step = direction.full_step(0.01)
    F_step = fisher_vector_product(problem.kl, problem.params, step, damping=0.0)
    assert float(0.5 * step @ F_step) == pytest.approx(0.01, rel=1e-6)


def test_a_damped_step_length_falls_short_of_the_boundary_by_uFu_over_its_damped_value():
    _, problem = tiny_problem()
    direction = problem.natural_gradient(damping=0.1, cg_iters=100)
    step = direction.full_step(0.01, damped_length=True)
    model = float(0.5 * step @ fisher_vector_product(problem.kl, problem.params, step, damping=0.0))
    damped_uFu = float(direction.u @ fisher_vector_product(problem.kl, problem.params, direction.u, damping=0.1))
    assert model == pytest.approx(0.01 * direction.uFu / damped_uFu, rel=1e-6) and model < 0.01


def test_a_step_that_violates_the_constraint_is_rejected_and_leaves_parameters_unchanged():
    policy, problem = tiny_problem()
    before = parameters_to_vector(policy.parameters()).clone()
    huge = 1_000 * problem.natural_gradient(0.1, 10).full_step(0.01)
    search = problem.line_search(huge, max_kl=0.01, ratio=0.5, max_backtracks=3)
    assert not search.accepted and search.backtracks == 3 and all(kl > 0.01 for kl in search.kls)
    assert torch.equal(parameters_to_vector(policy.parameters()), before)


def test_a_step_that_lowers_the_surrogate_is_rejected_even_inside_the_trust_region():
    policy, problem = tiny_problem()
    before = parameters_to_vector(policy.parameters()).clone()
    downhill = -problem.natural_gradient(0.1, 10).full_step(0.001)
    search = problem.line_search(downhill, max_kl=0.01, ratio=0.5, max_backtracks=3)
    assert not search.accepted and all(kl <= 0.01 for kl in search.kls) and all(i <= 0 for i in search.improvements)
    assert torch.equal(parameters_to_vector(policy.parameters()), before)


def test_an_accepted_step_moves_to_the_accepted_fraction():
    policy, problem = tiny_problem()
    before = parameters_to_vector(policy.parameters()).clone()
    step = problem.natural_gradient(0.1, 10).full_step(0.01)
    search = problem.line_search(step, max_kl=0.01, ratio=0.5, max_backtracks=10)
    assert search.accepted and search.kl <= 0.01 and search.improvement > 0
    fraction = search.fractions[search.backtracks]
    assert torch.allclose(parameters_to_vector(policy.parameters()), before + fraction * step)


def test_every_accepted_update_in_a_training_run_respects_the_kl_bound():
    h = trpo.train(TRPOConfig(seed=0, total_steps=6_000, eval_every=3_000, eval_episodes=2), progress=False)
    assert len(h.updates) == 6
    for u in h.updates:
        assert {"kl", "surrogate_improvement", "backtracks", "accepted"} <= set(u)
        assert u["kl_over_delta"] == pytest.approx(u["kl"] / 0.01)
        if u["accepted"]:
            assert u["kl"] <= 0.01 and u["surrogate_improvement"] > 0
            assert u["model_kl_over_delta"] == pytest.approx(0.8 ** (2 * u["backtracks"]))
            if u["backtracks"] == 0:
                assert u["full_step_kl_over_delta"] == u["kl_over_delta"]


@pytest.mark.parametrize(
    "field, value",
    [("max_kl", 0.0), ("max_kl", -0.1), ("damping", -0.01), ("cg_iters", 0), ("backtrack_ratio", 0.0),
     ("backtrack_ratio", 1.0), ("backtrack_ratio", 1.5), ("lam", 1.2), ("max_backtracks", 0)],
)
def test_bad_config_values_give_clear_errors(field, value):
    with pytest.raises(ConfigError, match=rf"TRPOConfig\.{field} = .* is out of range: expected .*Fix: "):
        TRPOConfig(**{field: value})


def test_conjugate_gradient_exercise_checker():
    assert exercises.check_conjugate_gradient(conjugate_gradient)
    wrong = exercises.check_conjugate_gradient(lambda Avp, b, iters: conjugate_gradient(Avp, b, 1))
    assert not wrong.passed and "only one iteration" in wrong.message


@pytest.mark.slow
def test_trpo_solves_cartpole_in_all_5_seeds_with_median_at_most_25k_steps(full_mode):
    histories = grid.train_runs(trpo.train, [TRPOConfig(seed=s, stop_when_solved=True) for s in range(5)], progress=False)
    steps = [h.steps_to_solve for h in histories]
    assert all(s is not None for s in steps), steps
    assert statistics.median(steps) <= 25_000, steps
    for h in histories:
        assert all(u["kl"] <= 0.01 for u in h.updates if u["accepted"])


@pytest.mark.slow
def test_a_large_gradient_step_collapses_the_policy_and_a_trpo_step_does_not(full_mode):
    """Notebook 02's measurement, at its full-mode size."""
    lab = trpo.StepSizeLab(seed=0)
    for lr in (10.0, 100.0):
        big = lab.gradient_step(lr)
        assert big.kl > 0.1 and big.return_after < 0.5 * lab.return_before, (big, lab.return_before)
    safe = lab.trpo_step(0.01)
    assert safe.kl <= 0.01 and safe.return_after >= 0.8 * lab.return_before, (safe, lab.return_before)
