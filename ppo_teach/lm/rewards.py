"""The reward: a sentiment score for each text, one interface ``score(texts) -> tensor``.

- ``"vader"`` (the offline default): VADER's compound score in [−1, 1] (Hutto & Gilbert, 2014), a
  rule-based scorer whose lexicon ships with the ``vaderSentiment`` package.
- a hub id or a folder (``"lvwerra/distilbert-imdb"``, the classifier of the classic TRL
  gpt2-sentiment example): a transformers sequence classifier, and the reward is the raw logit of
  its POSITIVE class, as in TRL's example (Ziegler et al. (2019) used the log-odds, z_pos − z_neg).
"""
from __future__ import annotations

import os
from typing import Protocol

import torch
from transformers import AutoModelForSequenceClassification, PretrainedConfig, PreTrainedTokenizerBase
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from ppo_teach.config import pick_device
from ppo_teach.errors import ConfigError
from ppo_teach.lm.hub import from_pretrained, load_tokenizer

VADER = "vader"
HUB_CLASSIFIER = "lvwerra/distilbert-imdb"
OFFLINE_REWARD = f"{VADER!r} (load_reward's default)"


class Reward(Protocol):
    positive_threshold: float  # a text whose score is above it reads as positive

    def score(self, texts: list[str]) -> torch.Tensor:
        """One float32 score per text, on the CPU: higher is more positive."""


class VaderReward:
    """VADER's compound score: the summed valence of the text's words, with VADER's rules for
    negation, intensifiers and punctuation, squashed into [−1, 1]."""

    positive_threshold = 0.05  # Hutto & Gilbert's: compound > 0.05 reads as positive

    def __init__(self) -> None:
        self.analyzer = SentimentIntensityAnalyzer()

    def score(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([self.analyzer.polarity_scores(text)["compound"] for text in texts], dtype=torch.float32)


class ClassifierReward:
    """The raw logit of a sequence classifier's POSITIVE class (unbounded; not its probability),
    batched, without gradients, each text truncated to what the classifier can read."""

    positive_threshold = 0.0  # the POSITIVE logit above 0

    def __init__(self, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, batch_size: int = 64) -> None:
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size
        self.positive = positive_label_index(model.config)
        self.max_length = min(tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", tokenizer.model_max_length))

    @torch.no_grad()
    def score(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        scores = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True, truncation=True, max_length=self.max_length, return_tensors="pt",
            ).to(device)
            scores.append(self.model(**batch).logits[:, self.positive].float().cpu())
        return torch.cat(scores) if scores else torch.zeros(0)


def positive_label_index(config: PretrainedConfig) -> int:
    """The index of the class labelled POSITIVE (in any case) in the classifier's ``id2label``."""
    matches = [int(i) for i, label in config.id2label.items() if str(label).lower() == "positive"]
    if len(matches) != 1:
        raise ConfigError(
            f"the classifier's labels are {dict(config.id2label)}: none (or more than one) is POSITIVE, so "
            f"there is no positive-sentiment logit to use as the reward. Fix: use a sentiment classifier "
            f"whose id2label has a POSITIVE class, such as {HUB_CLASSIFIER!r}, or {VADER!r}."
        )
    return matches[0]


def load_reward(name: str | os.PathLike = VADER, device: str | None = None) -> Reward:
    """``"vader"``, or a sequence classifier from a folder or a hub id (one code path,
    ``from_pretrained``; without network access, a hub id not in the cache fails within seconds)."""
    if str(name).lower() == VADER:
        return VaderReward()
    model = from_pretrained(AutoModelForSequenceClassification.from_pretrained, name, offline_default=OFFLINE_REWARD)
    tokenizer = load_tokenizer(name, offline_default=OFFLINE_REWARD)
    return ClassifierReward(model.to(pick_device(device)[0]), tokenizer)
