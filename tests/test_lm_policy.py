"""The language model as a policy: loading, the value head, the frozen reference, generation,
per-token log-probs, entropies and KL.  Nothing here depends on what the embedded model says, only
on its being a GPT-2 with its tokenizer."""
import copy
import math
import time

import pytest
import torch
from huggingface_hub import constants, try_to_load_from_cache
from transformers import GPT2LMHeadModel

from ppo_teach.errors import ConfigError
from ppo_teach.kl import exact_moments
from ppo_teach.lm import TINY_GPT2
from ppo_teach.lm.hub import HubUnreachable, check_hub_reachable, looks_like_path
from ppo_teach.lm.policy import (
    evaluate,
    generate,
    load_policy,
    max_positions,
    next_token_probs,
    per_token_kl,
    position_ids,
    reference_model,
    token_entropy,
    token_logprobs,
)
from ppo_teach.losses import approx_kl_k1, approx_kl_k3

PROMPTS = ["the movie was", "i watched this film and the actors were", "a story"]


@pytest.fixture(scope="module")
def batch(loaded):
    policy, tokenizer = loaded
    return generate(policy, tokenizer, PROMPTS, response_length=6, seed=0)


def hub_reachable() -> bool:
    try:
        check_hub_reachable("probe", "none")
        return True
    except HubUnreachable:
        return False


# --- loading ---------------------------------------------------------------------------------


def test_the_embedded_model_loads_through_from_pretrained_as_a_gpt2(loaded):
    policy, tokenizer = loaded
    assert isinstance(policy.lm, GPT2LMHeadModel)
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == tokenizer.eos_token
    assert tokenizer("the movie was").input_ids, "the tokenizer encodes text to tokens"
    again, _ = load_policy(str(TINY_GPT2), device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(policy.state_dict().values(), again.state_dict().values()))


def test_dropout_is_off_so_two_passes_in_train_mode_agree(loaded, batch):
    policy, _ = loaded
    drops = {k: v for k, v in policy.lm.config.to_dict().items() if "drop" in k and isinstance(v, float)}
    assert drops and set(drops.values()) == {0.0}
    assert all(m.p == 0.0 for m in policy.modules() if isinstance(m, torch.nn.Dropout))
    policy.train()
    try:
        first, second = (policy(batch.ids, batch.attention_mask).logits for _ in range(2))
    finally:
        policy.eval()
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", ["./no-such-model", "~/no-such-model", "/tmp/no/such/model", "a/b/c"])
def test_a_missing_model_folder_says_what_a_model_folder_is(name):
    with pytest.raises(ConfigError, match=r"(?s)does not exist.*config\.json.*TINY_GPT2.*tiny build"):
        load_policy(name, device="cpu")


def test_a_folder_without_config_json_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="has no config.json"):
        load_policy(tmp_path, device="cpu")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        load_policy(tmp_path / "weights.bin", device="cpu")


def test_hub_ids_and_paths_are_told_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    assert not looks_like_path("gpt2") and not looks_like_path("lvwerra/distilbert-imdb")
    paths = ["./gpt2", "~/models/gpt2", "/models/gpt2", "data/models/gpt2", "models/gpt2-typo", tmp_path, str(tmp_path)]
    assert all(looks_like_path(p) for p in paths)


def test_a_hub_id_without_network_fails_within_seconds_naming_the_offline_default(monkeypatch):
    """Portable: the hub is made unreachable (a closed local port), the id is in no cache."""
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(HubUnreachable, match=r"(?s)cannot be reached.*ppo_teach\.lm\.TINY_GPT2"):
        load_policy("ppo-teach/no-such-model", device="cpu")
    assert time.monotonic() - start < 10
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachable, match="HF_HUB_OFFLINE is set"):
        load_policy("ppo-teach/no-such-model", device="cpu")


@pytest.mark.skipif(try_to_load_from_cache("gpt2", "config.json") is not None, reason="gpt2 is in the local cache")
def test_gpt2_on_a_machine_without_network_fails_within_seconds():
    if hub_reachable():
        pytest.skip("the hub is reachable: this test is for a machine without network access")
    start = time.monotonic()
    with pytest.raises(HubUnreachable, match=r"(?s)'gpt2'.*cannot be reached.*TINY_GPT2"):
        load_policy("gpt2", device="cpu")
    assert time.monotonic() - start < 10


# --- the policy, its value head and its reference ----------------------------------------------


def test_position_ids_count_the_real_tokens_only():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_the_value_head_outputs_exactly_zero_at_the_start(loaded, batch):
    policy, _ = loaded
    assert torch.equal(policy(batch.ids, batch.attention_mask).values, torch.zeros(batch.ids.shape))
    assert torch.equal(evaluate(policy, batch).values, torch.zeros(batch.responses.shape))


def test_the_reference_is_a_frozen_copy(loaded):
    policy, _ = loaded
    reference = reference_model(policy)
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())
    assert any(p.requires_grad for p in policy.parameters()), "freezing the copy leaves the policy trainable"
    ours, theirs = next(policy.lm.parameters()), next(reference.lm.parameters())
    assert torch.equal(ours, theirs) and ours.data_ptr() != theirs.data_ptr()


# --- generation ----------------------------------------------------------------------------------


def test_responses_have_the_asked_length_after_left_padded_prompts(loaded, batch):
    _, tokenizer = loaded
    widths = [len(tokenizer(p).input_ids) for p in PROMPTS]
    assert batch.prompt_width == max(widths) and batch.responses.shape == (len(PROMPTS), 6)
    for row, width in enumerate(widths):
        padding = batch.prompt_width - width
        assert batch.attention_mask[row].tolist() == [0] * padding + [1] * (width + 6)
        assert batch.ids[row, padding : batch.prompt_width].tolist() == tokenizer(PROMPTS[row]).input_ids
    assert batch.texts == [t.replace(tokenizer.eos_token, " ") for t in tokenizer.batch_decode(batch.responses)]


def test_the_same_seed_gives_the_same_samples(loaded, batch):
    policy, tokenizer = loaded
    again = generate(policy, tokenizer, PROMPTS, response_length=6, seed=0)
    other = generate(policy, tokenizer, PROMPTS, response_length=6, seed=1)
    assert torch.equal(again.ids, batch.ids) and again.texts == batch.texts
    assert not torch.equal(other.ids, batch.ids)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_at_sampling_equal_the_recomputed_ones(loaded, temperature):
    policy, tokenizer = loaded
    batch = generate(policy, tokenizer, PROMPTS, response_length=6, temperature=temperature, seed=3)
    with torch.no_grad():
        first, second = evaluate(policy, batch), evaluate(policy, batch)
    assert torch.equal(first.logprobs, second.logprobs) and torch.equal(first.entropy, second.entropy)
    torch.testing.assert_close(first.logprobs, batch.sampling_logprobs, atol=1e-5, rtol=0)


def test_left_padding_leaves_every_real_tokens_logprob_unchanged(loaded):
    """A short prompt left-padded beside a long one scores each real token as it does alone."""
    policy, tokenizer = loaded
    batch = generate(policy, tokenizer, ["a story", "i watched this film and the actors were"], response_length=5, seed=0)
    padded, mask = batch.ids[:1], batch.attention_mask[:1]
    alone = padded[mask.bool()][None]
    padding = int((mask == 0).sum())
    assert padding > 0
    real = torch.arange(padded.shape[1] - 1) >= padding  # logits in column j score the token in column j + 1

    def logprobs(ids, attention_mask):
        with torch.no_grad():
            return token_logprobs(policy(ids, attention_mask).logits[:, :-1], ids[:, 1:])[0]

    in_batch, by_itself = logprobs(padded, mask)[real], logprobs(alone, torch.ones_like(alone))
    assert len(by_itself) == alone.shape[1] - 1 == real.sum()
    torch.testing.assert_close(in_batch, by_itself, atol=1e-5, rtol=0)
    with torch.no_grad():  # what the position ids from the mask prevent: positions counted from the padding
        shifted = token_logprobs(policy.lm(input_ids=padded, attention_mask=mask).logits[:, :-1], padded[:, 1:])[0][real]
    assert (shifted - by_itself).abs().max() > 1e-3


# --- per-token log-probs, entropy and KL ---------------------------------------------------------


def test_token_logprobs_and_entropy_match_torch_categorical():
    logits, tokens = torch.randn(2, 3, 5, 7), torch.randint(7, (2, 3, 5))
    dist = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(token_logprobs(logits, tokens), dist.log_prob(tokens))
    torch.testing.assert_close(token_entropy(logits), dist.entropy())


def test_lower_temperature_sharpens_the_next_token_distribution(loaded):
    policy, tokenizer = loaded
    entropies = [token_entropy(next_token_probs(policy, tokenizer, PROMPTS, t).log()) for t in (0.5, 1.0, 2.0)]
    assert all((low < high).all() for low, high in zip(entropies, entropies[1:]))


def test_kl_is_zero_for_identical_weights(loaded, batch):
    policy, _ = loaded
    with torch.no_grad():
        kl = per_token_kl(evaluate(policy, batch).logits, evaluate(reference_model(policy), batch).logits)
    assert torch.equal(kl, torch.zeros_like(kl))


def test_k1_and_k3_agree_with_the_exact_per_token_kl_in_expectation(loaded):
    """π_θ = the policy with Gaussian noise on its weights; samples come from π_θ, so it plays
    "old" in the estimators' KL(π_old ‖ π_new) and the reference plays "new"."""
    policy, tokenizer = loaded
    reference = reference_model(policy)
    perturbed = copy.deepcopy(policy)
    with torch.no_grad():
        for p in perturbed.parameters():
            p.add_(0.05 * torch.randn_like(p))
        batch = generate(perturbed, tokenizer, PROMPTS, response_length=4, seed=0)
        ours, theirs = evaluate(perturbed, batch).logits[0, 1], evaluate(reference, batch).logits[0, 1]
    exact = float(per_token_kl(ours, theirs))
    assert exact > 1e-3, "the noise moved the policy"
    p, q = torch.softmax(ours, -1), torch.softmax(theirs, -1)
    n = 20_000
    tokens = torch.multinomial(p, n, replacement=True, generator=torch.Generator().manual_seed(0))
    logp, logq = p.log()[tokens], q.log()[tokens]
    for estimator in (approx_kl_k1, approx_kl_k3):
        mean, std = exact_moments(estimator, p, q)
        assert mean == pytest.approx(exact, abs=1e-6)
        assert abs(float(estimator(logq, logp)) - exact) < 4 * std / math.sqrt(n)


# --- bad settings --------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.nan, math.inf])
def test_a_temperature_that_is_not_positive_and_finite_is_refused(loaded, temperature):
    policy, tokenizer = loaded
    with pytest.raises(ConfigError, match=r"temperature.*0 < temperature"):
        generate(policy, tokenizer, PROMPTS, temperature=temperature)
    with pytest.raises(ConfigError, match="temperature"):
        next_token_probs(policy, tokenizer, PROMPTS, temperature)


@pytest.mark.parametrize("length", [0, -3, 2.5])
def test_a_response_length_below_one_token_is_refused(loaded, length):
    policy, tokenizer = loaded
    with pytest.raises(ConfigError, match=r"response_length.*integer.*1 ≤ response_length"):
        generate(policy, tokenizer, PROMPTS, response_length=length)


@pytest.mark.parametrize("prompts", [[], "the movie was", ["the movie was", ""]])
def test_an_empty_prompt_list_or_prompt_is_refused(loaded, prompts):
    policy, tokenizer = loaded
    with pytest.raises(ConfigError, match="prompt"):
        generate(policy, tokenizer, prompts)


def test_a_prompt_and_response_longer_than_the_context_are_refused(loaded):
    policy, tokenizer = loaded
    with pytest.raises(ConfigError, match=r"more than the model's \d+ positions"):
        generate(policy, tokenizer, PROMPTS, response_length=max_positions(policy))


def test_a_tokenizer_that_pads_on_the_right_is_refused(loaded):
    policy, tokenizer = loaded
    right = copy.deepcopy(tokenizer)
    right.padding_side = "right"
    with pytest.raises(ConfigError, match="padding_side = 'left'"):
        generate(policy, right, PROMPTS)


def test_a_minibatch_of_a_generation_keeps_every_per_response_field_aligned(batch):
    idx = torch.tensor([len(PROMPTS) - 1, 0])
    part = batch.rows(idx)
    assert part.prompts == [PROMPTS[-1], PROMPTS[0]] and part.texts == [batch.texts[-1], batch.texts[0]]
    assert torch.equal(part.ids, batch.ids[idx]) and torch.equal(part.attention_mask, batch.attention_mask[idx])
    assert torch.equal(part.sampling_logprobs, batch.sampling_logprobs[idx])
    assert (part.prompt_width, part.temperature) == (batch.prompt_width, batch.temperature)
    assert part.full_texts == [p + r for p, r in zip(part.prompts, part.texts)]
