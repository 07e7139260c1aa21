"""The SLURM job a ``generate`` would submit, and its dry run.

:func:`slurm_params` turns an executor profile (``conf/executor/*.yaml``) into submitit's parameters:
``generate`` submits with them, and ``generate ... dry_run=true`` renders the sbatch script submitit
would write from the same dict, so the two cannot drift apart. The dry run needs neither SLURM, nor the
dataset, nor trained teachers: it says where those must be and whether they are there, and estimates
the GPU-hours from the recipe's FLOPs and an *assumed* throughput (``executor.assumed_tflops``) until
``scripts/tier_l_gpu.sh`` has measured it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from danas_bench.core.pairs import pair_slug, split_pair


def slurm_params(slurm: dict, pair: str) -> dict:
    """submitit AutoExecutor parameters of an executor profile (one node, one task per job)."""
    params = {
        "timeout_min": slurm.get("timeout_min", 60),
        "cpus_per_task": slurm.get("cpus_per_task", 1),
        "slurm_array_parallelism": slurm.get("array_parallelism", 64),
        "tasks_per_node": 1,
        "name": f"danas-{pair_slug(pair)}",
    }  # what squeue shows as the job name
    if slurm.get("partition"):
        params["slurm_partition"] = slurm["partition"]
    if slurm.get("mem_gb"):
        params["mem_gb"] = slurm["mem_gb"]
    if slurm.get("gpus_per_node"):
        params["gpus_per_node"] = slurm["gpus_per_node"]
    if slurm.get("additional_parameters"):
        params["slurm_additional_parameters"] = dict(slurm["additional_parameters"])
    return params


def array_limits(slurm: dict) -> tuple[int, int]:
    """(array jobs' largest size, shards per array task) of an executor profile; ValueError when either is
    below 1, so the dry run refuses what the real submission would."""
    size = slurm.get("max_array_size")
    size = 1000 if size is None else int(size)
    if size < 1:
        raise ValueError(f"executor.max_array_size must be >= 1, got {size}")
    per_task = int(slurm.get("shards_per_task") or 1)
    if per_task < 1:
        raise ValueError(f"executor.shards_per_task must be >= 1, got {per_task}")
    return size, per_task


def sbatch_script(folder: Path, params: dict, n_tasks: int) -> str:
    """The sbatch file submitit writes for an array of ``n_tasks`` tasks (a plain job for one), rendered
    by submitit's own SlurmExecutor without submitting anything (and without SLURM on this machine)."""
    from submitit.slurm.slurm import SlurmExecutor

    class _Renderer(SlurmExecutor):
        """submitit's SLURM executor without its check that ``srun`` exists: it renders, never submits."""

        @classmethod
        def affinity(cls) -> int:
            return 1

    ex = _Renderer(folder)
    # AutoExecutor's translation: generic names through the executor's own table, slurm_* unprefixed
    generic = {k: v for k, v in params.items() if not k.startswith("slurm_")}
    ex.update_parameters(
        **ex._convert_parameters(generic),
        **{k[len("slurm_") :]: v for k, v in params.items() if k.startswith("slurm_")},
    )
    if n_tasks > 1:
        ex.parameters["map_count"] = n_tasks  # as submitit's map_array does for an array
    return ex._make_submission_file_text(ex._submitit_command_str, "dry-run")


def _input(dataset: str) -> tuple[tuple[int, ...], int]:
    """(input shape, classes) without loading tier-L data (which may not be on this machine)."""
    from danas_bench.training import data

    if dataset in data.CIFAR:
        return (3, 32, 32), 10 if dataset == "cifar10" else 100
    ds = data.load(dataset)
    return ds.shape, ds.num_classes


def _split_sizes(dataset: str) -> dict[str, int]:
    from danas_bench.training import data

    if dataset in data.CIFAR:
        n = data.CIFAR_RECORDS
        return {"train": n - n // 12 - n // 6, "valid": n // 12, "test": n // 6}
    return data.load(dataset).sizes()


def mean_training_gflop(recipe, archs: list[int], n_sample: int = 16, seed: int = 0) -> float:
    """Mean GFLOPs of one architecture's whole run (3x forward per training image and epoch, 1x per
    evaluated image), over a seeded sample of ``archs``; counted with torch's FLOP counter on a
    zero input, so no data is needed."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from danas_bench.training.student import build

    shape, classes = _input(recipe.dataset)
    sizes = _split_sizes(recipe.dataset)
    pick = np.random.default_rng(seed).choice(archs, min(n_sample, len(archs)), replace=False)
    fwd = []
    for a in pick:
        model = build(int(a), 0, shape[0], classes, len(shape) - 1, **recipe.widths()).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, *shape))
        fwd.append(counter.get_total_flops())
    n_train = min(recipe.n_train or sizes["train"], sizes["train"])
    curve = min(recipe.valid_curve_n or sizes["valid"], sizes["valid"])
    evals = recipe.epochs * curve + sizes["valid"] + sizes["test"]
    return float(np.mean(fwd)) * (3.0 * n_train * recipe.epochs + evals) / 1e9


def _recipe_note(dataset: str, override) -> str:
    from danas_bench.core.recipe import recipe_source

    if override is not None and not isinstance(override, str):
        return "given on the command line"
    named = f"{dataset}{'' if override is None else '-' + override}.yaml"
    path = recipe_source(dataset, override)  # the default file may be an alias: name the version it serves
    name = named if path.name == named else f"{named} -> {path.name}"
    provisional = "PROVISIONAL" in path.read_text()
    return name + (" -- PROVISIONAL: not chosen by the recipe search (see the file)" if provisional else "")


def dry_run(plan, d: Path, recipe, slurm: dict, chunk: int, recipe_override=None, log=print, done: int = 0) -> int:
    """Print what ``generate`` would do on a SLURM cluster, submit nothing, write nothing; ``done``: the
    plan's shards already finished (counted by the caller, which owns the shards)."""
    from danas_bench.training import data, teachers

    dataset, teacher = split_pair(plan.pair)
    n_shards = len(plan.shards)
    pending = n_shards - done
    rows = sum(len(s["archs"]) for s in plan.shards)
    size = max(len(s["archs"]) for s in plan.shards)
    max_array, per_task = array_limits(slurm)
    tasks = -(-pending // per_task)  # array tasks: shards_per_task pending shards each
    n_arrays = -(-tasks // max_array) if tasks else 0
    gpus = int(slurm.get("gpus_per_node") or 0)
    gres = (slurm.get("additional_parameters") or {}).get("gres")
    device = slurm.get("device", "cpu")
    params = slurm_params(slurm, plan.pair)
    seeds = sorted({s["seed"] for s in plan.shards})

    log("DRY RUN: nothing is submitted and nothing is written.\n")
    log(f"== plan: {plan.pair}, recipe {plan.recipe_id} ({_recipe_note(dataset, recipe_override)})")
    log(
        f"   {rows} rows ({len({a for s in plan.shards for a in s['archs']})} architectures, seeds {seeds}) in "
        f"{n_shards} shards of <= {size}; {done} done, {pending} to run"
    )
    log(f"   shards in {d}")
    log(
        f"== SLURM: {n_arrays} array job(s) of <= {max_array} tasks (array size {min(tasks, max_array)}), "
        f"at most {slurm.get('array_parallelism')} running at once"
    )
    log(
        f"   per task: {'one shard' if per_task == 1 else f'{per_task} shards one after the other'} on {device}, "
        f"{gpus} GPU(s) per task" + (f" (gres {gres})" if gres else "") + f", {slurm.get('cpus_per_task')} CPU cores, "
        f"{slurm.get('mem_gb')} GB, time limit {slurm.get('timeout_min')} min, partition {slurm.get('partition')}; "
        f"chunk={chunk} architectures fused per training step"
    )
    if device != "cpu" and not (gpus or gres):
        log("   WARNING: the tasks train on a GPU but the profile requests none (gpus_per_node: 0, no gres)")

    log("== data (read on the compute nodes; sbatch passes this shell's environment on):")
    if dataset in data.CIFAR:
        root = data.data_root()
        there = all((root / f).is_file() for f in data.cifar_files(dataset))
        log(
            f"   DANAS_DATA={root} {'(present here)' if there else '(NOT present here)'}: must hold "
            f"{', '.join(data.cifar_files(dataset))} (the binary archive {data.CIFAR[dataset][4]}, md5 "
            f"{data.CIFAR[dataset][5]}), on a file system the compute nodes see"
        )
    else:
        log(f"   {dataset}: bundled with its package, or see docs/cluster.md")
    log("== teacher:")
    if teacher == "none":
        log("   none (plain cross-entropy): no teacher needed")
    else:
        logits = teachers.teacher_dir(dataset) / f"{teacher}.logits.safetensors"
        state = "present" if logits.is_file() else "NOT TRAINED YET"
        log(f"   {logits} ({state}; DANAS_TABLES={os.environ.get('DANAS_TABLES', '(unset: tables/)')})")
        if not logits.is_file():
            log(
                f"   train it first, on a GPU node: srun --gpus=1 --time=120 danas-bench teachers dataset={dataset} "
                f"'families=[{teacher}]' device=cuda   (without it every task fails at its start)"
            )

    gflop = mean_training_gflop(recipe, sorted({a for s in plan.shards for a in s["archs"]}))
    tflops = float(slurm.get("assumed_tflops") or 5.0)
    per_arch = gflop / (tflops * 1e3)  # seconds
    per_task_min = per_arch * size * per_task / 60
    log("== cost: ESTIMATE, NOT MEASURED")
    log(
        f"   {gflop:.0f} GFLOP per architecture (counted: mean of 16 sampled architectures, this recipe's "
        f"epochs and images), assuming the engine sustains {tflops:g} TFLOP/s per GPU (executor.assumed_tflops, "
        f"an assumption until scripts/tier_l_gpu.sh measures it)"
    )
    log(
        f"   ~{per_arch:.0f} GPU-s per architecture, ~{per_task_min:.0f} min per task of {size * per_task}; "
        f"~{per_arch * rows / 3600:.0f} GPU-hours for the whole plan "
        f"({per_arch * rows / 3600 / max(1, rows) * 6466:.0f} per seed of all 6,466 architectures)"
    )
    limit = slurm.get("timeout_min")
    if limit and per_task_min * 2 > float(limit):
        log(f"   WARNING: timeout_min={limit} is below 2x the estimated task time; raise it or lower shard_size")

    folder = d / "logs" / "%j"
    log(f"== sbatch script submitit would submit (the first array job, {min(tasks, max_array) or 1} task(s)):")
    log(sbatch_script(folder, params, min(tasks, max_array) or 1))
    return 0
