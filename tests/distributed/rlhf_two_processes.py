"""Run by tests/test_lm_distributed.py under ``accelerate launch --multi_gpu --num_processes 2`` on the
CPU (gloo).  ``first OUT``: the gradient of the first update on each process's own batch (averaged by
the engine) and that batch, then two iterations with a checkpoint after each, every process's
parameters saved after each update, and its log (number of processes, the per-iteration statistics, β).  ``resume OUT``: the run resumed from the first checkpoint, one
more iteration, the parameters saved.  Each process records which checkpoint writes it made."""
import sys
from pathlib import Path

import torch

from ppo_teach.lm import checkpoint
from ppo_teach.lm.config import RLHFConfig
from ppo_teach.lm.rlhf import RLHFTrainer

SETTINGS = dict(device="cpu", iterations=2, batch_size=4, minibatches=2, epochs=1, response_length=8, eval_prompts=8, eval_every=1,
                adaptive_kl=True, kl_horizon=100, grad_accumulation=2)


def flat(trainer: RLHFTrainer, what: str = "data") -> torch.Tensor:
    return torch.cat([getattr(p, what).detach().flatten() for p in trainer.policy.parameters()])


def main(mode: str, out: Path) -> None:
    original_write = checkpoint.write

    def write(folder, policy, state):  # every call of the checkpoint writer, with the process that made it
        with open(out / "writers.txt", "a") as log:
            log.write(f"{trainer.accelerator.process_index} {Path(folder).name}\n")
        original_write(folder, policy, state)

    checkpoint.write = write
    if mode == "first":
        trainer = RLHFTrainer(RLHFConfig(**SETTINGS, checkpoint_every=1, checkpoint_dir=str(out / "checkpoints")))
        rank = trainer.accelerator.process_index
        rollout = trainer.rollout()
        trainer.optimizer.zero_grad()
        trainer.accumulate_gradients(rollout, torch.arange(trainer.cfg.batch_size))
        batch = rollout.batch
        torch.save({"grad": flat(trainer, "grad"), "ids": batch.ids, "attention_mask": batch.attention_mask,
                    "prompt_width": batch.prompt_width, "prompts": batch.prompts, "texts": batch.texts,
                    "sampling_logprobs": batch.sampling_logprobs}, out / f"first-{rank}.pt")
        trainer.optimizer.zero_grad()
        trainer.train(callback=lambda t: torch.save(flat(t), out / f"params-{rank}-{t.iteration}.pt"), progress=False)
    else:
        trainer = RLHFTrainer.resume(out / "checkpoints" / "iteration-00001")
        rank = trainer.accelerator.process_index
        trainer.train(callback=lambda t: torch.save(flat(t), out / f"resumed-{rank}-{t.iteration}.pt"), progress=False)
    torch.save({"processes": trainer.processes, "iterations": trainer.history.iterations, "beta": trainer.beta},
               out / f"{mode}-log-{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
