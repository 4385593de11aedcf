"""``python -m ppo_teach.lm.train``: settings from a preset, a YAML or JSON file and flags; a run, its
checkpoint and its resumption; clear errors for bad input."""
import json

import pytest

from ppo_teach.errors import ConfigError
from ppo_teach.lm import train

SMALL = ["--iterations", "1", "--batch-size", "4", "--minibatches", "2", "--eval-prompts", "4", "--response-length", "4", "--device", "cpu"]


def test_flags_override_the_file_which_overrides_the_preset(tmp_path):
    (tmp_path / "run.yaml").write_text("batch_size: 32\nlr: 0.002\nadaptive_kl: true\n")
    args = train.parser().parse_args(["--preset", "gpt2", "--config", str(tmp_path / "run.yaml"), "--batch-size", "16", "--no-anneal-lr"])
    cfg = train.config_from(args)
    assert (cfg.model, cfg.batch_size, cfg.lr, cfg.adaptive_kl, cfg.anneal_lr) == ("gpt2", 16, 0.002, True, False)
    (tmp_path / "run.json").write_text(json.dumps({"epochs": 2}))
    assert train.config_from(train.parser().parse_args(["--config", str(tmp_path / "run.json")])).epochs == 2


def test_a_file_with_an_unknown_field_or_no_file_is_refused_clearly(tmp_path):
    (tmp_path / "run.yaml").write_text("batchsize: 32\n")
    with pytest.raises(ConfigError, match="'batchsize' \\(did you mean 'batch_size'\\?\\)"):
        train.config_from(train.parser().parse_args(["--config", str(tmp_path / "run.yaml")]))
    with pytest.raises(ConfigError, match="does not exist"):
        train.read_config_file(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="out of range"):
        train.config_from(train.parser().parse_args(["--lr", "-1"]))


def test_a_run_writes_its_final_checkpoint_and_resumes_from_it(tmp_path, capsys):
    trainer = train.main([*SMALL, "--checkpoint-dir", str(tmp_path)])
    assert trainer.iteration == 1 and (tmp_path / "iteration-00001" / "state.pt").is_file()
    out = capsys.readouterr().out
    assert "1 process(es) × 4 responses" in out and "evaluation iteration 1" in out
    resumed = train.main(["--resume", str(tmp_path / "iteration-00001")])
    assert resumed.iteration == 1 and resumed.history.evaluations == trainer.history.evaluations
    with pytest.raises(ConfigError, match="--resume continues a run with its checkpoint's settings"):
        train.main(["--resume", str(tmp_path / "iteration-00001"), "--batch-size", "8"])
