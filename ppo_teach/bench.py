"""Steps and seconds to solve CartPole-v1, per algorithm and seed.

    python -m ppo_teach.bench reinforce --seeds 0-4
    python -m ppo_teach.bench trpo --seeds 0,2,7 --json
    python -m ppo_teach.bench all --seeds 0-4
    python -m ppo_teach.bench all --seeds 0-4 --workers 1

The runs are independent, and ``grid.run_grid`` trains them side by side in ``--workers`` worker
processes (default: ``PPO_TEACH_WORKERS``, else the cores available); the steps to solve are the
same whatever the number, and results print as they arrive, the table at the end in order.

Solved means the course's criterion: the greedy policy's mean return over 10 fresh
evaluation episodes is ≥ 475, checked at the first batch end past every 5,000 environment
steps.  Each run stops there; the sampled policy it stopped with then plays 100 fresh
episodes, and ``sampled_return`` is their mean: Gymnasium's criterion for CartPole-v1 (its
``reward_threshold`` 475, averaged over 100 consecutive trials as the Gym wiki's solve rule
says, a trial read as an episode of the sampling policy) holds where it is ≥ 475.  ``wall_s`` counts training seconds
(collection and updates), not the evaluations; for an unsolved seed it is the whole run's.
Budgets are the full-mode defaults unless ``PPO_TEACH_FAST=1`` is set.

``rlhf`` is the language model's benchmark (notebook 06), not CartPole's:

    python -m ppo_teach.bench rlhf --seeds 0-2 --json
    python -m ppo_teach.bench rlhf --seeds 0-2 --beta 0

runs ``lm.rlhf``'s default offline run (the embedded tiny GPT-2, VADER) for its whole budget and
reports ``seconds_to_target``, the training seconds (evaluation excluded) until an evaluation on the
held-out prompts first shows positive rate ≥ 0.95, KL ≤ 6 nats per response and fluency ≥ 0.9 × the
pretrained model's (``lm.metrics.meets_target``; None if never), then the final evaluation beside
the pretrained model's.  ``--beta`` overrides β (0: no KL penalty, the reward-hacking case).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from ppo_teach import ppo, reinforce, trpo
from ppo_teach.config import budget, fast_mode
from ppo_teach.errors import ConfigError
from ppo_teach.grid import WORKERS_ENV_VAR, check_workers, run_grid
from ppo_teach.history import History
from ppo_teach.training import TrainConfig

GYM_REWARD_THRESHOLD = 475.0  # gymnasium.spec("CartPole-v1").reward_threshold

ALGORITHMS: dict[str, tuple[type[TrainConfig], Callable[..., History]]] = {
    "reinforce": (reinforce.ReinforceConfig, reinforce.train),
    "trpo": (trpo.TRPOConfig, trpo.train),
    "ppo": (ppo.PPOConfig, ppo.train),
}


@dataclass
class Result:
    algo: str
    seed: int
    steps_to_solve: int | None
    wall_s: float
    sampled_return: float | None = None  # the stopped policy, sampling, over 100 fresh episodes

    @property
    def meets_gym_criterion(self) -> bool | None:
        """Whether the stopped policy's sampled return reaches CartPole-v1's ``reward_threshold``
        (None where it was not measured)."""
        return None if self.sampled_return is None else self.sampled_return >= GYM_REWARD_THRESHOLD


RLHF_FAST_ITERATIONS = 5


@dataclass
class RLHFResult:
    algo: str
    seed: int
    beta: float
    seconds_to_target: float | None
    positive_rate: float  # the final evaluation's, and so on
    kl: float
    fluency: float | None  # None (JSON null) when no response completed a sentence: nothing to judge
    fluency_baseline: float  # the pretrained model's (the evaluation before any update)
    distinct2: float
    distinct2_baseline: float
    wall_s: float  # the whole run: loading, training and evaluations


def solve_rlhf(seed: int, beta: float | None = None) -> RLHFResult:
    """``lm.rlhf``'s default run on ``seed`` (β = ``beta`` if given) for its whole budget."""
    # Imported here, not at the top: the language-model stack (transformers) would double the start-up
    # of every CartPole benchmark and of each grid's worker processes.
    from ppo_teach.lm.metrics import seconds_to_target
    from ppo_teach.lm.rlhf import RLHFConfig, RLHFTrainer

    start = time.perf_counter()
    cfg = RLHFConfig(
        seed=seed,
        beta=RLHFConfig.beta if beta is None else beta,
        iterations=budget(full=RLHFConfig.iterations, fast=RLHF_FAST_ITERATIONS),
    )
    evaluations = RLHFTrainer(cfg).train(progress=False).evaluations
    reached = seconds_to_target(evaluations)
    base, final = evaluations[0], evaluations[-1]
    return RLHFResult(
        "rlhf", seed, cfg.beta, None if reached is None else round(reached, 2),
        final["positive_rate"], round(final["kl"], 3), None if math.isnan(final["fluency"]) else round(final["fluency"], 3), round(base["fluency"], 3),
        round(final["distinct2"], 3), round(base["distinct2"], 3), round(time.perf_counter() - start, 2),
    )


def rlhf_table(results: list[RLHFResult]) -> str:
    """One row per seed: seconds to target, then the final evaluation (the pretrained model's in brackets;
    "no sentence" where no response completed a sentence, so that fluency has nothing to judge)."""
    lines = [f"{'seed':>4} {'β':>6} {'s to target':>11} {'positive':>9} {'KL':>7} {'fluency (base)':>17} {'distinct-2 (base)':>18} {'wall s':>7}"]
    for r in results:
        reached = "never" if r.seconds_to_target is None else f"{r.seconds_to_target:.1f}"
        fluent = "no sentence" if r.fluency is None else f"{r.fluency:.0%}"
        lines.append(
            f"{r.seed:>4} {r.beta:>6g} {reached:>11} {r.positive_rate:>9.0%} {r.kl:>7.2f} "
            f"{f'{fluent} ({r.fluency_baseline:.0%})':>17} {f'{r.distinct2:.2f} ({r.distinct2_baseline:.2f})':>18} {r.wall_s:>7.1f}"
        )
    return "\n".join(lines)


def parse_seeds(text: str) -> list[int]:
    """'0-4' → [0, 1, 2, 3, 4]; '0,3,7' → [0, 3, 7]; ranges and lists mix: '0-2,9'."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            seeds.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        raise ConfigError(f"--seeds {text!r} is not understood. Fix: write e.g. '0-4' or '0,3,7'.") from None
    if not seeds:
        raise ConfigError(f"--seeds {text!r} names no seed. Fix: write e.g. '0-4' (low ≤ high).")
    return seeds


def solve(algo: str, seed: int, **overrides: Any) -> Result:
    """Train ``algo`` with its default config (changed by ``overrides``) on ``seed`` until solved or out of budget.
    Interrupting it (Ctrl-C) raises ``KeyboardInterrupt``: a run cut short has no result."""
    config_cls, train = ALGORITHMS[algo]
    history = train(config_cls(seed=seed, stop_when_solved=True, **overrides), progress=False)
    if history.interrupted:
        raise KeyboardInterrupt
    wall = history.wall_s_to_solve if history.solved else history.train_wall_s
    return Result(algo, seed, history.steps_to_solve, round(wall, 2), history.final_sampled_return)


def fewest_steps(finished: dict[tuple[str, int], Result]) -> str:
    """A progress-bar note on ``solve_grid``'s (label, seed) runs: the one that solved in the fewest steps so far."""
    solved = {cell: r.steps_to_solve for cell, r in finished.items() if r.steps_to_solve is not None}
    if not solved:
        return "none solved yet"
    label, seed = min(solved, key=solved.get)
    return f"best: {label}, seed {seed}, {solved[label, seed]:,} steps"


def solve_grid(
    runs: dict[str, tuple[str, dict[str, Any]]],
    seeds: list[int],
    on_result: Callable[[str, Result], None] | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> dict[str, list[Result]]:
    """For each ``label: (algo, overrides)``, ``solve`` on every seed, ``workers`` runs at once
    (``grid.run_grid``: the same results whatever the number); ``on_result(label, result)`` sees each
    result as it arrives.  ``progress`` shows one bar over all the runs.  Grouped by label, in seed order;
    after Ctrl-C, the runs that finished."""
    cells = {(label, seed): partial(solve, algo, seed, **overrides) for label, (algo, overrides) in runs.items() for seed in seeds}
    report = None if on_result is None else lambda cell, result: on_result(cell[0], result)
    results = run_grid(cells, workers, progress, "runs", fewest_steps, report)
    table: dict[str, list[Result]] = {}
    for (label, _), result in results.items():
        table.setdefault(label, []).append(result)
    return table


def compare(
    algos: list[str], seeds: list[int], on_result: Callable[[str, Result], None] | None = None, progress: bool = True,
    workers: int | None = None,
) -> dict[str, list[Result]]:
    """Every algorithm with its defaults on every seed, grouped by algorithm (``solve_grid``)."""
    return solve_grid({algo: (algo, {}) for algo in algos}, seeds, on_result, progress, workers)


def ablation(
    seeds: list[int], on_result: Callable[[str, Result], None] | None = None, progress: bool = True, workers: int | None = None
) -> dict[str, list[Result]]:
    """PPO with each entry of ``ppo.ABLATIONS`` applied in turn, solved on every seed (``solve_grid``)."""
    return solve_grid({name: ("ppo", overrides) for name, overrides in ppo.ABLATIONS.items()}, seeds, on_result, progress, workers)


def median_steps(results: list[Result]) -> float:
    """Median steps to solve, an unsolved seed counting as worse than every solved one."""
    return statistics.median(r.steps_to_solve if r.steps_to_solve is not None else float("inf") for r in results)


def extra_steps(groups: dict[str, list[Result]], reference: str = "defaults") -> dict[str, float | None]:
    """Per group other than ``reference``: its median steps to solve minus the reference's (inf where
    the group did not solve on most seeds but the reference did), None where the reference itself did
    not solve on most seeds: then there is nothing to compare with (inf − inf is no number)."""
    if reference not in groups:
        raise ConfigError(f"no group {reference!r} to compare with among {', '.join(map(repr, groups))}. Fix: name one of them.")
    baseline = median_steps(groups[reference])
    return {
        label: None if math.isinf(baseline) else median_steps(rows) - baseline
        for label, rows in groups.items() if label != reference
    }


def extra_steps_table(groups: dict[str, list[Result]], reference: str = "defaults") -> str:
    """``extra_steps`` as lines, the largest cost first; a single line when the reference did not solve."""
    costs = extra_steps(groups, reference)
    if any(extra is None for extra in costs.values()):
        solved = sum(r.steps_to_solve is not None for r in groups[reference])
        return (f"the {reference} solved on {solved} of {len(groups[reference])} seeds: with no median steps to solve "
                "there is nothing to compare the other groups with")
    lines = [f"median extra env steps to solve, compared with the {reference} (inf: did not solve on most seeds):"]
    lines += [f"  {extra:>+10,.0f}  {label}" for label, extra in sorted(costs.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def gym_criterion(results: list[Result]) -> str:
    """'k/n': on how many runs the policy it stopped with meets Gymnasium's criterion."""
    measured = [r.meets_gym_criterion for r in results if r.meets_gym_criterion is not None]
    return f"{sum(measured)}/{len(measured)}" if measured else "–"


def summary_table(groups: dict[str, list[Result]]) -> str:
    """One row per group (an algorithm, or an ablation): seeds solved, median and worst steps to
    solve (an unsolved seed counts as worse than any solved one), median seconds, and on how
    many seeds the policy it stopped with also meets Gymnasium's criterion (sampled return over
    100 episodes ≥ 475)."""
    width = max([10, *(len(label) for label in groups)])
    lines = [f"{'':<{width}} {'solved':>7} {'median steps':>13} {'worst steps':>12} {'median s':>9} {'gym ≥ 475':>10}"]
    for label, rows in groups.items():
        solved = [r.steps_to_solve for r in rows if r.steps_to_solve is not None]
        worst = f"{max(solved):,}" if len(solved) == len(rows) else "unsolved"
        median = median_steps(rows)
        lines.append(
            f"{label:<{width}} {len(solved):>3}/{len(rows):<3} {'unsolved' if median == float('inf') else f'{median:,.0f}':>13} "
            f"{worst:>12} {statistics.median(r.wall_s for r in rows):>9.1f} {gym_criterion(rows):>10}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ppo_teach.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("algo", choices=[*ALGORITHMS, "all", "rlhf"])
    parser.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 0,3,7 (default 0-4)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"runs at once in worker processes (default: ${WORKERS_ENV_VAR}, else the cores available; 1: one after another)")
    parser.add_argument("--beta", type=float, default=None, help="rlhf only: the KL coefficient β (default: the config's; 0 hacks)")
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
        check_workers(args.workers)
    except ConfigError as err:
        parser.error(str(err))
    if fast_mode():
        print("note: PPO_TEACH_FAST=1 is set, so these are fast-mode budgets, not the benchmark's.", file=sys.stderr)
    if args.algo == "rlhf":
        return bench_rlhf(seeds, args.beta, args.json)
    if args.beta is not None:
        parser.error("--beta applies to rlhf only.")
    algos = list(ALGORITHMS) if args.algo == "all" else [args.algo]

    def report(_: str, result: Result) -> None:
        if args.json:
            print(json.dumps(result.__dict__), flush=True)
        else:
            steps = f"{result.steps_to_solve:,} env steps" if result.steps_to_solve is not None else "not solved"
            sampled = f", sampled return over 100 episodes {result.sampled_return:.0f}" if result.sampled_return is not None else ""
            print(f"{result.algo:<10} seed {result.seed}: {steps:>18}, {result.wall_s:7.1f} s{sampled}", flush=True)

    results = compare(algos, seeds, report, progress=False, workers=args.workers)  # each result printed as it arrives
    if not args.json:
        print("\n" + summary_table(results))
    return 0 if sum(map(len, results.values())) == len(algos) * len(seeds) else 130  # 130: interrupted (Ctrl-C)


def bench_rlhf(seeds: list[int], beta: float | None, as_json: bool) -> int:
    """The rlhf benchmark on every seed: with ``as_json`` one JSON object per result as it arrives, else a table at the end."""
    results = []
    for seed in seeds:
        results.append(solve_rlhf(seed, beta))
        if as_json:
            print(json.dumps(results[-1].__dict__), flush=True)
    if not as_json:
        print(rlhf_table(results))
    return 0


if __name__ == "__main__":
    # Run as ppo_teach.bench, not as __main__, so that the grid's worker processes find solve() by its module's name.
    from ppo_teach.bench import main as bench_main

    sys.exit(bench_main())
