"""The ``danas-bench`` command: ``danas-bench <command> key=value ...`` (Hydra overrides).

Each command has a Hydra config ``danas_bench/conf/<command>.yaml``; overrides use Hydra's syntax,
e.g. ``danas-bench generate pair=mnist1d/tcn executor=slurm 'noise_seeds=[1,2]'``.

A wrong input (an override Hydra cannot parse, an unknown key, a value out of range, a damaged table)
ends the command with one line on stderr saying what was wrong and exit status 2; ``--debug`` (or
``HYDRA_FULL_ERROR=1``) shows the traceback instead. Called from Python with an explicit ``argv``,
``main`` raises the exception instead (``one_line_errors=True`` asks for the command's behaviour).
"""

from __future__ import annotations

import os
import sys

COMMANDS = {
    "pilot": "Run the pilot study that fixes each dataset's recipe; writes docs/pilot.md",
    "teachers": "Train a dataset's teachers and cache their logits under tables/teachers/",
    "generate": "Train a pair's table as sharded, resumable submitit tasks (local, slurm, debug), then merge",
    "merge": "Merge a pair's finished shards into its table and tables/MANIFEST",
    "promote": "Serve a recipe version by default for a dataset, once its tables are complete",
    "progress": "Where each generation stands: shards done per seed, core-hours spent and left, merge state",
    "verify": "Re-check every file in tables/MANIFEST: sha256, rows, recipe, coverage",
    "archs": "Params, FLOPs and latency of every canonical architecture for a dataset",
    "summary": "Print the pilot's summary of the chosen recipes from docs/pilot.json",
    "datasheet": "Compute docs/datasheet.md (noise, KD analysis, Pareto fronts) from the shipped tables",
    "query": 'Print one architecture\'s record: danas-bench query "<arch>" pair=dataset/teacher',
    "leaderboard": "Run every searcher on every pair over many seeds; writes docs/leaderboard.md and plots",
    "expected": 'Fit the cross-fitted expected accuracy of every architecture per pair (seed="expected")',
}


def compose(name: str, overrides: list[str]):
    from hydra import compose as hcompose
    from hydra import initialize_config_module

    with initialize_config_module(config_module="danas_bench.conf", version_base="1.3"):
        return hcompose(config_name=name, overrides=overrides)


def usage() -> str:
    lines = ["usage: danas-bench [--debug] <command> [key=value ...]", "", "commands:"]
    lines += [f"  {k:<10} {v}" for k, v in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None, one_line_errors: bool | None = None) -> int:
    if one_line_errors is None:
        one_line_errors = argv is None  # the process's own command line: a user at a shell
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("HYDRA_FULL_ERROR") == "1" or not one_line_errors
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    cmd, overrides = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"danas-bench: unknown command {cmd!r}\n\n{usage()}", file=sys.stderr)
        return 2
    from danas_bench import commands

    if cmd == "query" and overrides and "=" not in overrides[0]:  # the bare architecture argument
        arch = overrides[0]
        overrides[0] = f"arch='{arch}'" if arch.lstrip().startswith("|") else f"arch={arch}"
    try:
        cfg = compose(cmd, overrides)
        return int(getattr(commands, cmd)(cfg) or 0)
    except SystemExit as exc:  # a command's own message (usage, nothing to merge, ...)
        if debug or not isinstance(exc.code, str):
            raise
        print(one_line(exc.code), file=sys.stderr)
        return 2
    except Exception as exc:
        if debug or not _user_error(exc):
            raise
        print(
            f"danas-bench {cmd}: {one_line(exc)} (`danas-bench {cmd} --debug ...` shows the traceback)", file=sys.stderr
        )
        return 2


def _user_error(exc: Exception) -> bool:
    """Errors about the input (overrides, values, files), not bugs: they get one line, no traceback."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from danas_bench.core.budget import BudgetExhausted

    return isinstance(
        exc,
        (
            HydraException,
            OmegaConfBaseException,
            ValueError,
            LookupError,
            BudgetExhausted,
            FileNotFoundError,
            PermissionError,
        ),
    )


def one_line(exc: BaseException) -> str:
    """The error's message on one line (Hydra's span several, with its own hints)."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if type(exc).__module__.startswith(("hydra", "omegaconf")):
        msg += "; overrides are key=value (lists as 'key=[1,2]', strings with spaces quoted)"
    return msg


if __name__ == "__main__":
    sys.exit(main())
