"""A causal language model as a policy: tokens are actions, the prompt and the tokens so far are the
state, a response is an episode.

- ``load_policy``: the language model (the embedded tiny GPT-2, or ``"gpt2"`` from the hub, one
  code path) with dropout off, a zero-initialised scalar value head, and its tokenizer.
- ``reference_model``: the frozen copy the per-token KL is measured against.
- ``generate``: fixed-length responses to a batch of prompts, by pure sampling.
- ``evaluate``: the per-token log-probabilities, entropies and values of those responses in one
  forward pass, the same function right after sampling and in the update.
- ``token_logprobs``, ``token_entropy``, ``per_token_kl``: the per-token quantities themselves;
  ``kl_estimates``: the exact KL beside its k1 and k3 estimates.

Prompts of different lengths are padded on the left, so every response starts in the same column;
the attention mask hides the padding and the position ids are counted from the mask, so each real
token sees exactly what it would see alone.
"""
from __future__ import annotations

import copy
import os
import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedTokenizerBase

from ppo_teach.config import Bounds, bounded, pick_device, validate
from ppo_teach.errors import ConfigError
from ppo_teach.kl import estimator_moments, per_sample
from ppo_teach.lm import TINY_GPT2
from ppo_teach.lm.hub import from_pretrained, load_tokenizer
from ppo_teach.losses import approx_kl_k1, approx_kl_k3

OFFLINE_POLICY = "the embedded tiny GPT-2 (ppo_teach.lm.TINY_GPT2, load_policy's default)"


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_policy(
    name_or_path: str | os.PathLike = TINY_GPT2, device: str | None = None
) -> tuple[PolicyWithValueHead, PreTrainedTokenizerBase]:
    """The policy (a causal LM from ``from_pretrained``, dropout off, with a value head) and its
    tokenizer (padding on the left; the pad token is EOS when the model has none), on ``device``
    (``config.pick_device``: None chooses CUDA, then MPS, then the CPU).
    """
    config = without_dropout(from_pretrained(AutoConfig.from_pretrained, name_or_path, offline_default=OFFLINE_POLICY))
    lm = from_pretrained(AutoModelForCausalLM.from_pretrained, name_or_path, offline_default=OFFLINE_POLICY, config=config)
    tokenizer = load_tokenizer(name_or_path, offline_default=OFFLINE_POLICY)
    tokenizer.padding_side = "left"
    return PolicyWithValueHead(lm).to(pick_device(device)[0]), tokenizer


def without_dropout(config: PretrainedConfig) -> PretrainedConfig:
    """The config with every dropout probability set to 0 (GPT-2's ``resid_pdrop``, ``embd_pdrop``,
    ``attn_pdrop``, …: every float field whose name contains "drop").  With dropout on, two passes
    over the same tokens give different log-probs, and the PPO ratio π_θ/π_old would not start at 1.
    """
    for key, value in config.to_dict().items():
        if "drop" in key and isinstance(value, float):
            setattr(config, key, 0.0)
    return config


# ---------------------------------------------------------------------------------------------
# The policy and its value head
# ---------------------------------------------------------------------------------------------


@dataclass
class PolicyOutput:
    logits: torch.Tensor  # [B, T, V]: next-token logits at every position
    values: torch.Tensor  # [B, T]: V(prefix up to and including that position)
    past_key_values: object | None  # the KV cache, when asked for


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over the real tokens only: pos = max(cumsum(mask) − 1, 0).

    With left padding [pad, pad, a, b] the mask is [0, 0, 1, 1] and a, b get positions 0, 1, as they
    would alone (the padding gets 0; it is masked out anyway)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class PolicyWithValueHead(nn.Module):
    """A causal LM and a scalar value head V(s) = w·h + b on its last hidden state h, with w = 0 and
    b = 0 at the start, so V starts at exactly 0 and the first updates do not fight a random critic."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm
        self.value_head = nn.Linear(lm.config.hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, past_key_values: object | None = None, use_cache: bool = False
    ) -> PolicyOutput:
        """One pass over ``input_ids`` (the new tokens; with ``past_key_values``, the ones after the
        cache).  ``attention_mask`` covers the cache and the new tokens; the position ids come from it."""
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids(attention_mask)[:, -input_ids.shape[1] :],
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_hidden_states=True,
        )
        values = self.value_head(out.hidden_states[-1]).squeeze(-1)
        return PolicyOutput(out.logits, values, out.past_key_values)


def reference_model(policy: PolicyWithValueHead) -> PolicyWithValueHead:
    """π_ref: a deep copy of the policy as it is now, frozen (no gradients, eval mode).  Its value
    head is copied along and never used; keeping the same type lets ``evaluate`` serve both."""
    return copy.deepcopy(policy).requires_grad_(False).eval()


def max_positions(policy: PolicyWithValueHead) -> int:
    """How many tokens the model can attend to (GPT-2's ``n_positions``)."""
    return int(policy.lm.config.max_position_embeddings)


# ---------------------------------------------------------------------------------------------
# Per-token quantities
# ---------------------------------------------------------------------------------------------


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log π(a_t | s_t) for each position: log_softmax over the vocabulary, then pick the token.

    logits: [..., T, V], tokens: [..., T]  →  [..., T].  (The log of raw logits, or a softmax
    without the log, are not log-probabilities.)"""
    return _picked(torch.log_softmax(logits, dim=-1), tokens)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(π(·|s_t)) = −Σ_v π(v|s_t) log π(v|s_t) at each position: [..., T, V] → [..., T]."""
    return _entropy(torch.log_softmax(logits, dim=-1))


def _picked(logp: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log π(a_t | s_t) from the log-probabilities over the vocabulary."""
    return logp.gather(-1, tokens[..., None]).squeeze(-1)


def _entropy(logp: torch.Tensor) -> torch.Tensor:
    """H(π(·|s_t)) from the log-probabilities over the vocabulary."""
    return -(logp.exp() * logp).sum(-1)


def per_token_kl(logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """The exact KL(π_θ(·|s_t) ‖ π_ref(·|s_t)) = Σ_v π_θ(v|s_t)·(log π_θ(v|s_t) − log π_ref(v|s_t)) at
    each response position, from the two models' logits: [..., T, V] → [..., T].

    Beside it, the sample estimates on the sampled tokens a_t ~ π_θ: ``losses.approx_kl_k1`` and
    ``approx_kl_k3`` estimate KL(π_old ‖ π_new) from samples of π_old, and here the samples come
    from π_θ, so π_θ plays "old" and π_ref "new":
    ``approx_kl_k1(logp=ref_logprobs, logp_old=policy_logprobs)``.
    """
    logp, logp_ref = torch.log_softmax(logits, dim=-1), torch.log_softmax(reference_logits, dim=-1)
    return (logp.exp() * (logp - logp_ref)).sum(-1)


# ---------------------------------------------------------------------------------------------
# Sampling responses
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """How responses are sampled; checked when made."""

    response_length: int = bounded(16, Bounds(low=1, integer=True, fix="ask for at least one token, e.g. 16."))
    temperature: float = bounded(
        1.0, Bounds(low=0.0, low_open=True, fix="use 1.0 for the model's own distribution; below 1 sharpens it, above 1 flattens it.")
    )

    def __post_init__(self) -> None:
        validate(self)


@dataclass
class Generation:
    """A batch of prompts, left-padded to ``prompt_width`` columns, each followed by its response."""

    ids: torch.Tensor  # [B, P + R]: padding, prompt, response
    attention_mask: torch.Tensor  # [B, P + R]: 0 on the padding, 1 elsewhere
    prompt_width: int  # P: the response starts in this column in every row
    temperature: float  # the temperature the responses were sampled at
    prompts: list[str]
    texts: list[str]  # the decoded responses (``decode``: an end of text reads as a space)
    sampling_logprobs: torch.Tensor  # [B, R]: log π of each sampled token, from the sampling loop's own logits

    @property
    def responses(self) -> torch.Tensor:
        """The response tokens, [B, R]."""
        return self.ids[:, self.prompt_width :]

    @property
    def full_texts(self) -> list[str]:
        """Each prompt followed by its response: what the reward scores."""
        return [p + r for p, r in zip(self.prompts, self.texts)]

    def rows(self, idx: torch.Tensor) -> Generation:
        """The responses ``idx``, as a batch of their own: one minibatch."""
        picked = idx.tolist()
        per_response = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{
            name: [value[i] for i in picked] if isinstance(value, list) else value[idx]
            for name, value in per_response.items() if isinstance(value, (list, torch.Tensor))
        })


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of the prompts, padded on the left; every prompt must have a token."""
    if isinstance(prompts, str) or not prompts:
        raise ConfigError(f"prompts = {prompts!r} is not a non-empty list of strings. Fix: pass e.g. ['the movie was'].")
    if tokenizer.padding_side != "left":
        raise ConfigError(
            f"the tokenizer pads on the {tokenizer.padding_side}: responses must all start in the same column. "
            "Fix: use the tokenizer load_policy returns, or set tokenizer.padding_side = 'left'."
        )
    batch = tokenizer(list(prompts), return_tensors="pt", padding=True)
    empty = [i for i, row in enumerate(batch.attention_mask) if not row.any()]
    if empty:
        raise ConfigError(f"prompts {empty} have no tokens: a response needs a prompt to continue. Fix: give each prompt some text.")
    return batch.input_ids.to(device), batch.attention_mask.to(device)


def check_fits(policy: PolicyWithValueHead, prompt_width: int, response_length: int) -> None:
    """Prompt + response must fit in the model's context (its ``n_positions``)."""
    limit = max_positions(policy)
    if prompt_width + response_length > limit:
        raise ConfigError(
            f"the longest prompt ({prompt_width} tokens) plus the response ({response_length} tokens) is "
            f"{prompt_width + response_length} tokens, more than the model's {limit} positions. "
            "Fix: shorten the prompts or the response length."
        )


def decode(tokenizer: PreTrainedTokenizerBase, token_ids: torch.Tensor) -> list[str]:
    """The text of each row of ``token_ids``, an end-of-text token read as a space: a response that
    ends one review and starts the next reads "… was great . the plot …", as sentences within a
    review do, rather than gluing them ("… was great .the plot …")."""
    return [text.replace(tokenizer.eos_token, " ") for text in tokenizer.batch_decode(token_ids)]


@torch.no_grad()
def generate(
    policy: PolicyWithValueHead,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    response_length: int = 16,
    temperature: float = 1.0,
    seed: int | None = None,
) -> Generation:
    """Sample a response of exactly ``response_length`` tokens for each prompt, one token at a time:
    a_t ~ softmax(logits_t / temperature) over the whole vocabulary (pure sampling: no top-k, no
    top-p).  Every response has the same length: an end-of-text token sampled midway does not stop
    it.  The KV cache keeps each step to one new token.  The same ``seed`` gives the same samples
    on the CPU; None draws from torch's global generator.
    """
    settings = Sampling(response_length, temperature)
    device = next(policy.parameters()).device
    ids, mask = encode_prompts(tokenizer, prompts, device)
    check_fits(policy, ids.shape[1], settings.response_length)
    generator = None if seed is None else torch.Generator(device).manual_seed(seed)
    new_tokens, cache, responses, logprobs = ids, None, [], []
    for _ in range(settings.response_length):
        out = policy(new_tokens, mask, past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1:] / settings.temperature  # the next token's logits, [B, 1, V]
        token = torch.multinomial(torch.softmax(logits[:, 0], dim=-1), 1, generator=generator)  # [B, 1]
        logprobs.append(token_logprobs(logits, token))
        responses.append(token)
        mask = torch.cat([mask, torch.ones_like(token)], dim=1)  # the new token is real: attend to it
        new_tokens, cache = token, out.past_key_values
    response_ids = torch.cat(responses, dim=1)
    return Generation(
        ids=torch.cat([ids, response_ids], dim=1),
        attention_mask=mask,
        prompt_width=ids.shape[1],
        temperature=settings.temperature,
        prompts=list(prompts),
        texts=decode(tokenizer, response_ids),
        sampling_logprobs=torch.cat(logprobs, dim=1),
    )


@dataclass
class Evaluation:
    """What one forward pass says about each response token a_t of a ``Generation``: [B, R] each,
    the logits [B, R, V]."""

    logits: torch.Tensor  # logits / temperature of the distribution a_t was drawn from
    logprobs: torch.Tensor  # log π(a_t | s_t)
    entropy: torch.Tensor  # H(π(·|s_t))
    values: torch.Tensor  # V(s_t), s_t = the prompt and the response before a_t


def evaluate(policy: PolicyWithValueHead, batch: Generation) -> Evaluation:
    """Per-token log-probs, entropies and values of ``batch``'s responses under ``policy`` (or the
    reference), in one pass over prompt + response at the batch's own temperature.

    The logits at column t predict the token in column t + 1, so the response tokens (columns
    P … P+R−1) are scored by the logits in columns P−1 … P+R−2.  Used right after sampling (π_old)
    and again in the update (π_θ): the same computation, so the two agree exactly until θ moves.
    """
    out = policy(batch.ids, batch.attention_mask)
    scored = slice(batch.prompt_width - 1, -1)
    logits = out.logits[:, scored] / batch.temperature
    logp = torch.log_softmax(logits, dim=-1)  # once, for the log-probs and the entropies
    return Evaluation(logits, _picked(logp, batch.responses), _entropy(logp), out.values[:, scored])


@dataclass
class PerTokenKL:
    """[B, R] each: the exact KL(π_θ(·|s_t) ‖ π_ref(·|s_t)) at every response token; its k1 and k3
    estimates from the sampled token a_t ~ π_θ alone; and the exact standard deviation of each
    estimator over a_t given the prefix s_t (computed over the whole vocabulary)."""

    exact: torch.Tensor
    k1: torch.Tensor
    k3: torch.Tensor
    k1_std: torch.Tensor
    k3_std: torch.Tensor


def kl_estimates(policy_eval: Evaluation, reference_eval: Evaluation) -> PerTokenKL:
    """The exact per-token KL beside the sample estimates ``losses.approx_kl_k1`` and ``approx_kl_k3``
    applied to each token alone (``kl.per_sample``), and their exact spreads (``kl.estimator_moments``).
    The tokens were sampled from π_θ, so π_θ plays "old" and π_ref "new": k1 = log π_θ(a_t) − log π_ref(a_t),
    k3 = (ρ_t − 1) − log ρ_t with ρ_t = π_ref(a_t)/π_θ(a_t); both have the exact KL as their expectation
    given s_t."""
    k1, k3 = (per_sample(k, reference_eval.logprobs, policy_eval.logprobs) for k in (approx_kl_k1, approx_kl_k3))
    logp, logp_ref = (torch.log_softmax(e.logits.double(), -1) for e in (policy_eval, reference_eval))  # ρ can be huge
    (k1_mean, k1_std), (_, k3_std) = (estimator_moments(k, logp, logp_ref) for k in (approx_kl_k1, approx_kl_k3))
    exact = k1_mean.to(policy_eval.logits.dtype)  # E_π[k1] = Σ_v π(v)·(log π(v) − log π_ref(v)), the exact KL
    return PerTokenKL(exact, k1, k3, k1_std, k3_std)


@torch.no_grad()
def next_token_probs(
    policy: PolicyWithValueHead, tokenizer: PreTrainedTokenizerBase, prompts: list[str], temperature: float = 1.0
) -> torch.Tensor:
    """π(·|prompt) = softmax(logits / temperature) of the token after each prompt: [B, V]."""
    settings = Sampling(temperature=temperature)
    ids, mask = encode_prompts(tokenizer, prompts, next(policy.parameters()).device)
    return torch.softmax(policy(ids, mask).logits[:, -1] / settings.temperature, dim=-1)
