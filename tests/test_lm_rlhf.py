"""The RLHF trainer: the PPO pieces on language-model rollouts, checkpoints, its config, and the
offline targets of issue 9 (slow)."""
import dataclasses
import json
import time

import pytest
import torch
from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification, GPT2Config, GPT2LMHeadModel

from ppo_teach import bench
from ppo_teach.errors import ConfigError
from ppo_teach.lm import TINY_GPT2
from ppo_teach.lm.config import split_prompts
from ppo_teach.lm.metrics import seconds_to_target
from ppo_teach.lm.rlhf import RLHFConfig, RLHFTrainer, response_gae

SMALL = dict(batch_size=8, minibatches=2, epochs=2, response_length=8, eval_prompts=8, eval_every=100)
TIMING = {"seconds", "tokens_per_s"}


def small(**changes) -> RLHFTrainer:
    return RLHFTrainer(RLHFConfig(**{**SMALL, **changes}))


def weights(trainer: RLHFTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.policy.state_dict().items()}


def without_timing(log: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in entry.items() if k not in TIMING} for entry in log]


def left_padded(batch, columns: int, pad_id: int):
    """The same batch with ``columns`` more padding columns on the left (masked out)."""
    rows = batch.ids.shape[0]
    return dataclasses.replace(
        batch,
        ids=torch.cat([torch.full((rows, columns), pad_id), batch.ids], dim=1),
        attention_mask=torch.cat([torch.zeros(rows, columns, dtype=batch.attention_mask.dtype), batch.attention_mask], dim=1),
        prompt_width=batch.prompt_width + columns,
    )


def test_the_reward_rises_over_a_short_run():
    trainer = small(batch_size=16, minibatches=2, iterations=8)
    history = trainer.train(progress=False)
    _, scores = history.series("score_mean")
    assert sum(scores[-2:]) / 2 > sum(scores[:2]) / 2 + 0.2
    assert history.evaluations[-1]["positive_rate"] > history.evaluations[0]["positive_rate"]


def test_before_any_update_the_ratio_is_exactly_one_and_the_approximate_kl_zero():
    trainer = small()
    rollout = trainer.rollout()
    terms = trainer.loss_terms(rollout, torch.arange(trainer.cfg.batch_size))
    assert torch.equal(terms["ratio"], torch.ones_like(terms["ratio"]))
    assert float(terms["approx_kl"].detach()) == 0.0 and float(terms["clip_fraction"]) == 0.0
    torch.testing.assert_close(rollout.logprobs, rollout.batch.sampling_logprobs, atol=1e-5, rtol=0)


def test_the_kl_and_its_penalty_are_zero_while_policy_and_reference_share_weights():
    trainer = small(beta=0.5)
    rollout = trainer.rollout()
    assert torch.equal(rollout.kl, torch.zeros_like(rollout.kl))
    assert torch.equal(rollout.rewards[:, :-1], torch.zeros_like(rollout.rewards[:, :-1]))
    assert torch.equal(rollout.rewards[:, -1], rollout.scores)
    assert trainer.evaluate()["kl"] == 0.0


def test_gae_over_a_response_ends_at_its_last_token():
    rewards, values = torch.randn(3, 5), torch.randn(3, 5)
    gamma, lam = 0.9, 0.8
    next_values = torch.cat([values[:, 1:], torch.zeros(3, 1)], dim=1)
    deltas = rewards + gamma * next_values - values
    expected = torch.stack([sum((gamma * lam) ** (k - t) * deltas[:, k] for k in range(t, 5)) for t in range(5)], dim=1)
    torch.testing.assert_close(response_gae(rewards, values, gamma, lam), expected)


def test_left_padding_the_prompts_changes_neither_the_rollout_nor_the_update():
    plain, padded = small(), small()
    batch = plain.sample()
    padded.generator.set_state(plain.generator.get_state())  # the same shuffles in both updates
    a, b = plain.score(batch), padded.score(left_padded(batch, 5, plain.tokenizer.pad_token_id))
    for field in ("logprobs", "ref_logprobs", "values", "rewards", "advantages", "returns"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), atol=1e-5, rtol=0)
    stats_a, stats_b = plain.update(a), padded.update(b)
    assert stats_a == pytest.approx(stats_b, abs=1e-5)
    for key, value in weights(plain).items():
        torch.testing.assert_close(value, weights(padded)[key], atol=1e-5, rtol=0)


def test_gradient_accumulation_gives_the_minibatchs_own_update():
    whole, chunked = small(), small(grad_accumulation=2)
    rollout = whole.rollout()
    chunked.generator.set_state(whole.generator.get_state())
    assert whole.update(rollout) == pytest.approx(chunked.update(rollout), abs=1e-5)
    for key, value in weights(whole).items():
        torch.testing.assert_close(value, weights(chunked)[key], atol=1e-5, rtol=1e-4)


def test_a_resumed_run_matches_an_uninterrupted_one_exactly(tmp_path):
    straight = small(iterations=4)
    straight.train(progress=False)
    first = small(iterations=4)
    first.train(2, progress=False)
    first.save(tmp_path / "checkpoint")
    resumed = RLHFTrainer.resume(tmp_path / "checkpoint")
    resumed.train(2, progress=False)
    assert resumed.iteration == 4
    assert without_timing(resumed.history.iterations) == without_timing(straight.history.iterations)
    for key, value in weights(straight).items():
        assert torch.equal(value, weights(resumed)[key]), key
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]


def test_checkpoints_are_written_every_n_iterations_and_load_safely(tmp_path):
    trainer = small(iterations=2, checkpoint_every=1, checkpoint_dir=str(tmp_path))
    trainer.train(progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iteration-00001", "iteration-00002"]
    assert (tmp_path / "iteration-00002" / "policy.safetensors").is_file()
    torch.load(tmp_path / "iteration-00002" / "state.pt", weights_only=True)


@pytest.mark.parametrize("target, direction", [(0.5, 1), (1e6, -1)])
def test_the_proportional_controller_moves_beta_toward_the_target(target, direction):
    """Above the target KL β grows, below it β shrinks, after each iteration.  (The first rollout's
    KL is exactly 0, below any target; the large learning rate moves π past 0.5 nats at once.)"""
    trainer = small(iterations=4, beta=0.1, lr=1e-2, adaptive_kl=True, kl_target=target, kl_horizon=40)
    trainer.train(progress=False)
    _, betas = trainer.history.series("beta")
    _, kls = trainer.history.series("kl")
    assert betas[0] == 0.1  # the first iteration used the initial β
    moves = [later - earlier for earlier, later in zip(betas, betas[1:] + [trainer.beta])]
    assert all((kl > target) == (move > 0) for kl, move in zip(kls, moves)), (kls, betas)
    assert direction * (trainer.beta - betas[1]) > 0


def test_training_evaluates_before_the_first_update_every_few_iterations_and_at_the_end():
    trainer = small(iterations=5, eval_every=2)
    history = trainer.train(progress=False)
    assert history.series("positive_rate", evaluations=True)[0] == [0, 2, 4, 5]
    assert [e["iteration"] for e in history.iterations] == [1, 2, 3, 4, 5]
    seconds = [e["seconds"] for e in history.iterations]
    assert seconds == sorted(seconds) and set(history.iterations[0]) >= {
        "score_mean", "score_std", "kl", "beta", "entropy", "clip_fraction", "approx_kl", "value_loss", "explained_variance", "tokens_per_s",
    }


def test_the_callback_after_the_last_iteration_sees_its_evaluation():
    """A live dashboard drawn from the callback once showed the run without its final evaluation."""
    seen = []
    small(iterations=3, eval_every=2).train(callback=lambda t: seen.append(t.history.evaluations[-1]["iteration"]), progress=False)
    assert seen == [0, 2, 3]


def test_interrupting_training_returns_the_history_so_far():
    def stop_after_two(trainer):
        if trainer.iteration == 2:
            raise KeyboardInterrupt

    history = small(iterations=5).train(callback=stop_after_two, progress=False)
    assert [e["iteration"] for e in history.iterations] == [1, 2]


def test_held_out_prompts_are_fixed_and_disjoint_from_the_training_prompts():
    train, held_out = split_prompts(64)
    assert len(held_out) == 64 and not set(train) & set(held_out)
    assert split_prompts(64) == (train, held_out)


def test_samples_pair_each_text_with_its_score():
    trainer = small()
    pairs = trainer.samples(["the movie was", "the plot was"], seed=3)
    assert [text.startswith(p) for (text, _), p in zip(pairs, ["the movie was", "the plot was"])] == [True, True]
    assert pairs == trainer.samples(["the movie was", "the plot was"], seed=3)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"beta": -0.1}, "beta"),
        ({"response_length": 0}, "response_length"),
        ({"batch_size": 10, "minibatches": 4}, "does not divide batch_size"),
        ({"batch_size": 8, "minibatches": 2, "grad_accumulation": 3}, "grad_accumulation"),
        ({"model": "./no/such/model"}, "config.json"),
        ({"checkpoint_every": 5}, "checkpoint_dir"),
        ({"eval_prompts": 10_000}, None),
    ],
)
def test_bad_settings_are_refused_with_a_fix(changes, words):
    with pytest.raises(ConfigError, match="Fix") as err:
        RLHFTrainer(RLHFConfig(**changes))
    assert words is None or words in str(err.value)


def test_bf16_on_the_cpu_is_refused():
    with pytest.raises(ConfigError, match="bf16"):
        RLHFTrainer(RLHFConfig(bf16=True, device="cpu"))


def test_the_rlhf_benchmark_prints_one_json_object_per_seed(monkeypatch, capsys):
    monkeypatch.setenv("PPO_TEACH_FAST", "1")
    assert bench.main(["rlhf", "--seeds", "0", "--json", "--beta", "0.5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["algo"] == "rlhf" and result["seed"] == 0 and result["beta"] == 0.5
    assert set(result) >= {"seconds_to_target", "positive_rate", "kl", "fluency", "fluency_baseline", "distinct2", "distinct2_baseline", "wall_s"}


def gpt2_size_setup(folder):
    """A randomly initialised GPT-2 of the 124M model's depth and width (``GPT2Config()`` with the tiny tokenizer's 901-token vocabulary: about 86M parameters) and a
    small random DistilBERT classifier with a POSITIVE label, each saved with a tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(TINY_GPT2)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)).save_pretrained(folder / "gpt2")
    tokenizer.save_pretrained(folder / "gpt2")
    classifier = DistilBertConfig(
        vocab_size=len(tokenizer), dim=64, hidden_dim=128, n_layers=2, n_heads=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1}, pad_token_id=tokenizer.eos_token_id,
    )
    DistilBertForSequenceClassification(classifier).save_pretrained(folder / "classifier")
    tokenizer.save_pretrained(folder / "classifier")


def test_a_gpt2_size_model_with_a_classifier_reward_runs_one_iteration(tmp_path):
    gpt2_size_setup(tmp_path)
    trainer = RLHFTrainer(RLHFConfig(
        model=str(tmp_path / "gpt2"), reward=str(tmp_path / "classifier"), batch_size=4, minibatches=2, epochs=1,
        response_length=8, eval_prompts=4, lr=1.41e-5, iterations=1,
    ))
    assert sum(p.numel() for p in trainer.policy.lm.parameters()) > 85_000_000
    start = time.perf_counter()
    stats = trainer.step()
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values()), stats
    print(f"one iteration at GPT-2's depth and width: {time.perf_counter() - start:.1f} s")


@pytest.mark.slow
def test_offline_targets_default_run_and_reward_hacking_at_beta_zero():
    """Issue 9's offline targets on seed 0 with the full budget (RLHFConfig's default iterations):
    the default run reaches the target within 60 training seconds; β = 0, after as many iterations,
    hacks the reward (fluency below half the pretrained model's, KL above 30 nats per response)."""
    torch.set_num_threads(2)
    default = RLHFTrainer(RLHFConfig(seed=0)).train(progress=False)
    hacked = RLHFTrainer(RLHFConfig(seed=0, beta=0.0)).train(progress=False)
    reached = seconds_to_target(default.evaluations)
    assert reached is not None and reached <= 60, default.evaluations
    baseline, final = hacked.evaluations[0], hacked.evaluations[-1]
    # NaN fluency (no complete sentence in any response) counts as below half, as it should.
    assert not final["fluency"] >= 0.5 * baseline["fluency"] and final["kl"] > 30, final
