"""The RLHF trainer from the command line, alone or under Hugging Face Accelerate:

    python -m ppo_teach.lm.train --preset tiny --iterations 40
    python -m ppo_teach.lm.train --config run.yaml --checkpoint-dir runs/a --checkpoint-every 10
    accelerate launch --multi_gpu --num_processes 4 -m ppo_teach.lm.train --preset gpt2
    python -m ppo_teach.lm.train --resume runs/a/iteration-00010

The settings are notebook 06's (``RLHFConfig``): a preset, then a YAML or JSON file of fields, then
one flag per field (``--batch-size 32``, ``--adaptive-kl`` / ``--no-adaptive-kl``), each overriding
the one before.  ``--resume`` continues a checkpoint's run with its settings, to its ``iterations``.
Only the main process prints; a checkpoint is written at the end when ``checkpoint_dir`` is set.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from ppo_teach.errors import ConfigError, TrainingDiverged
from ppo_teach.lm.config import PRESETS, RLHFConfig, preset
from ppo_teach.lm.rlhf import RLHFTrainer

FIELDS = {f.name: f for f in dataclasses.fields(RLHFConfig)}


def read_config_file(path: Path | str) -> dict[str, Any]:
    """The fields a YAML (``.yaml``/``.yml``) or JSON file sets, checked against ``RLHFConfig``'s names."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist. Fix: give the path of a YAML or JSON file of RLHFConfig fields.")
    text = path.read_text()
    settings = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    if not isinstance(settings, dict):
        raise ConfigError(f"config file {str(path)!r} holds {type(settings).__name__}, not a mapping of RLHFConfig fields to values.")
    unknown = [key for key in settings if key not in FIELDS]
    if unknown:
        hints = {key: difflib.get_close_matches(key, FIELDS, n=1) for key in unknown}
        described = ", ".join(f"{key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "") for key, hint in hints.items())
        raise ConfigError(f"config file {str(path)!r} sets fields RLHFConfig does not have: {described}. Fix: use its field names.")
    return settings


def parser() -> argparse.ArgumentParser:
    """``--preset``, ``--config``, ``--resume`` and one flag per ``RLHFConfig`` field."""
    p = argparse.ArgumentParser(prog="python -m ppo_teach.lm.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--preset", choices=PRESETS, default="tiny", help="notebook 06's run to start from (default: tiny)")
    p.add_argument("--config", help="a YAML or JSON file of RLHFConfig fields")
    p.add_argument("--resume", help="a checkpoint folder to continue from")
    fields = p.add_argument_group("RLHFConfig fields (default: the preset's)")
    for name, f in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(f.default, bool):
            fields.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = type(f.default) if isinstance(f.default, (int, float)) else str
            fields.add_argument(flag, dest=name, type=kind, default=None, metavar=kind.__name__.upper())
    return p


def config_from(args: argparse.Namespace) -> RLHFConfig:
    """The preset, then the file's fields, then the flags given."""
    settings = read_config_file(args.config) if args.config else {}
    settings |= {name: value for name in FIELDS if (value := getattr(args, name)) is not None}
    return preset(args.preset, **settings)


def main(argv: list[str] | None = None) -> RLHFTrainer:
    """Train (or resume) as the arguments say; the main process prints each evaluation.  Returns the trainer."""
    args = parser().parse_args(argv)
    if args.resume:
        given = [name for name in FIELDS if getattr(args, name) is not None] + (["config"] if args.config else [])
        if given:
            raise ConfigError(f"--resume continues a run with its checkpoint's settings, but {', '.join(given)} were given too. "
                              "Fix: resume without them, or start a new run.")
        trainer = RLHFTrainer.resume(args.resume)
    else:
        trainer = RLHFTrainer(config_from(args))
    report = trainer.accelerator.print  # prints on the main process only
    report(f"RLHF: {trainer.cfg.model} against {trainer.cfg.reward}, {trainer.processes} process(es) × {trainer.cfg.batch_size} "
           f"responses per iteration, on {trainer.device}")
    seen = len(trainer.history.evaluations)

    def show_evaluations(t: RLHFTrainer) -> None:
        nonlocal seen
        for entry in t.history.evaluations[seen:]:
            report("evaluation " + ", ".join(f"{k} {v:.4g}" for k, v in entry.items()))
        seen = len(t.history.evaluations)

    trainer.train(callback=show_evaluations)
    show_evaluations(trainer)
    cfg = trainer.cfg
    finished = trainer.iteration >= cfg.iterations  # not after an interrupt: that iteration may be partly applied
    if cfg.checkpoint_dir and finished:
        path = Path(cfg.checkpoint_dir) / f"iteration-{trainer.iteration:05d}"
        if not (cfg.checkpoint_every and trainer.iteration % cfg.checkpoint_every == 0):  # else train() just wrote it
            trainer.save(path)
        report(f"checkpoint: {path}")
    return trainer


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, TrainingDiverged) as error:  # the message says what was wrong and how to fix it
        sys.exit(f"{type(error).__name__}: {error}")
