"""The RLHF trainer data-parallel under Hugging Face Accelerate: two CPU processes (gloo) launched by
``accelerate launch``, checked against each other and against one process on the union of their batches."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ppo_teach.lm.config import RLHFConfig
from ppo_teach.lm.policy import Generation
from ppo_teach.lm.rlhf import RLHFTrainer

sys.path.insert(0, str(Path(__file__).parent / "distributed"))
from rlhf_two_processes import SETTINGS, flat  # noqa: E402

SCRIPT = Path(__file__).parent / "distributed" / "rlhf_two_processes.py"
ROOT = Path(__file__).parent.parent


def launch(*target: str) -> subprocess.CompletedProcess:
    """``accelerate launch`` two processes of ``target`` (a script and its arguments, or ``-m`` and a module) on
    the CPU.  accelerate's ``--cpu`` flag would start a single process; ``--multi_gpu`` starts one per
    ``--num_processes``, and the trainer puts them on the CPU (device="cpu"), where torch.distributed uses gloo."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", *target]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two_processes")
    launch(str(SCRIPT), "first", str(out))
    launch(str(SCRIPT), "resume", str(out))
    return out


def union(batches: list[dict], pad_id: int) -> Generation:
    """One ``Generation`` of both processes' responses, their prompts left-padded to one width."""
    width = max(b["prompt_width"] for b in batches)
    ids, masks = [], []
    for b in batches:
        extra = width - b["prompt_width"]
        ids.append(torch.nn.functional.pad(b["ids"], (extra, 0), value=pad_id))
        masks.append(torch.nn.functional.pad(b["attention_mask"], (extra, 0), value=0))
    return Generation(torch.cat(ids), torch.cat(masks), width, 1.0, sum((b["prompts"] for b in batches), []),
                      sum((b["texts"] for b in batches), []), torch.cat([b["sampling_logprobs"] for b in batches]))


def test_both_processes_ran_and_hold_identical_parameters_after_each_update(run):
    assert [torch.load(run / f"first-log-{rank}.pt")["processes"] for rank in (0, 1)] == [2, 2]
    for iteration in (1, 2):
        assert torch.equal(torch.load(run / f"params-0-{iteration}.pt"), torch.load(run / f"params-1-{iteration}.pt"))
    assert not torch.equal(torch.load(run / "params-0-1.pt"), torch.load(run / "params-0-2.pt"))  # the updates moved them


def test_the_first_gradient_is_the_single_process_gradient_on_the_union_of_the_batches(run):
    batches = [torch.load(run / f"first-{rank}.pt") for rank in (0, 1)]
    assert torch.equal(batches[0]["grad"], batches[1]["grad"])  # averaged by the engine
    assert batches[0]["prompts"] != batches[1]["prompts"] or batches[0]["texts"] != batches[1]["texts"]  # two different shares
    single = RLHFTrainer(RLHFConfig(**{**SETTINGS, "batch_size": 2 * SETTINGS["batch_size"]}))
    rollout = single.score(union(batches, single.tokenizer.pad_token_id))
    single.optimizer.zero_grad()
    single.accumulate_gradients(rollout, torch.arange(len(rollout.scores)))
    expected, got = flat(single, "grad"), batches[0]["grad"]
    assert expected.abs().max() > 1e-3
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6), float((got - expected).abs().max())


def test_the_logged_statistics_and_beta_are_the_global_batchs_in_both_processes(run):
    """Each process holds different responses: a statistic of its own batch would differ between them."""
    logs = [torch.load(run / f"first-log-{rank}.pt") for rank in (0, 1)]
    assert logs[0]["iterations"] == [{**entry, "seconds": logs[0]["iterations"][i]["seconds"],
                                      "tokens_per_s": logs[0]["iterations"][i]["tokens_per_s"]}
                                     for i, entry in enumerate(logs[1]["iterations"])]  # timings aside
    assert logs[0]["beta"] == logs[1]["beta"] != SETTINGS.get("beta", 0.2)  # the adaptive β moved, the same in both


def test_the_command_runs_under_accelerate_launch_and_prints_once(tmp_path):
    done = launch("-m", "ppo_teach.lm.train", "--device", "cpu", "--iterations", "1", "--batch-size", "4", "--minibatches", "2",
                  "--eval-prompts", "4", "--response-length", "4", "--checkpoint-dir", str(tmp_path))
    assert done.stdout.count("2 process(es) × 4 responses per iteration") == 1
    assert done.stdout.count("checkpoint: ") == 1 and (tmp_path / "iteration-00001" / "state.pt").is_file()


def test_only_the_main_process_wrote_the_checkpoints(run):
    writes = (run / "writers.txt").read_text().split("\n")[:-1]
    assert writes == ["0 iteration-00001", "0 iteration-00002", "0 iteration-00002"]  # the first run's two, the resumed run's one


def test_the_two_process_run_resumes_exactly_from_its_checkpoint(run):
    for rank in (0, 1):
        assert torch.equal(torch.load(run / f"resumed-{rank}-2.pt"), torch.load(run / "params-0-2.pt"))
