"""``python -m ppo_teach.lm.train``: settings from a preset, a YAML or JSON file and flags; a run, its
checkpoint and its resumption; clear errors for bad input."""
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType

from ppo_teach.errors import ConfigError
from ppo_teach.lm import checkpoint, train
from ppo_teach.lm.rlhf import RLHFTrainer, check_data_parallel

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


def _weights(trainer):
    return [p.detach().clone() for p in trainer.policy.parameters()]


def test_a_run_checkpoints_and_resumes_exactly(tmp_path, capsys):
    trainer = train.main([*SMALL, "--iterations", "2", "--checkpoint-every", "1", "--checkpoint-dir", str(tmp_path)])
    assert trainer.iteration == 2 and all((tmp_path / f"iteration-0000{i}" / "state.pt").is_file() for i in (1, 2))
    out = capsys.readouterr().out
    assert "1 process(es) × 4 responses" in out and "evaluation iteration 2" in out and out.count("checkpoint: ") == 1
    resumed = train.main(["--resume", str(tmp_path / "iteration-00001")])
    assert resumed.iteration == 2 and all(torch.equal(a, b) for a, b in zip(_weights(resumed), _weights(trainer)))
    with pytest.raises(ConfigError, match="--resume continues a run with its checkpoint's settings"):
        train.main(["--resume", str(tmp_path / "iteration-00001"), "--batch-size", "8"])


def test_a_final_checkpoint_overwrites_an_old_one_of_the_same_name(tmp_path):
    train.main([*SMALL, "--checkpoint-dir", str(tmp_path), "--seed", "1"])
    second = train.main([*SMALL, "--checkpoint-dir", str(tmp_path), "--seed", "2"])
    assert checkpoint.read_state(tmp_path / "iteration-00001")["config"]["seed"] == 2 == second.cfg.seed


def test_resuming_with_another_number_of_processes_is_refused(tmp_path):
    trainer = train.main([*SMALL, "--checkpoint-dir", str(tmp_path)])
    state = checkpoint.read_state(tmp_path / "iteration-00001")
    torch.save({**state, "processes": 2}, tmp_path / "iteration-00001" / checkpoint.STATE)
    with pytest.raises(ConfigError, match="written by a run of 2 process\\(es\\), and this run has 1"):
        RLHFTrainer.resume(tmp_path / "iteration-00001")
    assert trainer.processes == 1


def test_fsdp_and_deepspeed_are_refused(monkeypatch):
    for kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        with pytest.raises(ConfigError, match="data-parallel \\(DDP\\) only"):
            check_data_parallel(SimpleNamespace(distributed_type=kind))
    check_data_parallel(SimpleNamespace(distributed_type=DistributedType.MULTI_GPU))
    for flag, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        # on the CPU, accelerate launch --use_fsdp falls back to DDP (MULTI_CPU): the request is refused all the same
        with monkeypatch.context() as env:
            env.setenv(flag, "true")
            with pytest.raises(ConfigError, match=f"set up for {name}, but"):
                check_data_parallel(SimpleNamespace(distributed_type=DistributedType.MULTI_CPU))


def test_the_command_reports_a_bad_setting_in_one_line():
    run = subprocess.run([sys.executable, "-m", "ppo_teach.lm.train", "--preset", "tiny", "--batch-size", "-3"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "ConfigError: RLHFConfig.batch_size = -3 is out of range: expected an integer with 1 ≤ batch_size. Fix: use an integer ≥ 1, e.g. 64."
    ]
