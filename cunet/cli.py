"""The `cunet` command line.

Thin by design: every command lives in a module of `cunet.commands`, builds a config, calls one library function and
prints the result. Commands are discovered from that package, so adding a command never edits this file. Command
modules import only click at the top (the library is imported inside the command), which keeps `cunet --help`
fast and working without torch, ONNX Runtime or TensorRT.

Every discovered command is wrapped by `cunet.commands._common.guard`, so it runs under its write policy (the one
ownership rule of `cunet.io`, derived from its declared output options) and an OS error while writing or a missing
optional package is one line: that holds for a command added tomorrow without anyone remembering it.

A `CunetError` becomes one line on stderr and exit code 1; so does a usage mistake (a missing argument or option, an
unknown variant), which keeps click's usage hint: every failure a user can cause exits 1, as the README says.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import click

import cunet
from cunet import commands
from cunet.commands._common import guard
from cunet.errors import CunetError
from cunet.tempdirs import sweep_once

__all__ = ["main", "cli"]


def _discover() -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    for info in pkgutil.iter_modules(commands.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        for attr in getattr(module, "__all__", []):
            cmd = getattr(module, attr)
            if isinstance(cmd, click.Command):
                found[cmd.name] = guard(cmd)
    return found


#: Commands newcomers look for that do not exist, and where what they want lives.
_NOT_A_COMMAND = {
    "lowbit": "low-bit models are trained with `cunet train --bits-w 1|2|4|8 --bits-a 8`, exported with `cunet "
              "export` and bit-packed with `cunet pack` / `cunet unpack`",
}


class _Group(click.Group):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._loaded = False

    def _load(self) -> None:
        if not self._loaded:
            for name, cmd in _discover().items():
                self.add_command(cmd, name)
            self._loaded = True

    def list_commands(self, ctx):
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        self._load()
        return super().get_command(ctx, name)

    def resolve_command(self, ctx, args):
        if args and self.get_command(ctx, args[0]) is None and args[0] in _NOT_A_COMMAND:
            raise click.UsageError(f"there is no `cunet {args[0]}`: {_NOT_A_COMMAND[args[0]]}", ctx)
        return super().resolve_command(ctx, args)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(cunet.__version__, prog_name="cunet")
def cli() -> None:
    """Train, compile and evaluate CU-Net landmark localizers.

    \b
    The pipeline, one command per arrow:
      cunet data synth  → a dataset in 300-W / MPII format
      cunet train       → RUN/best.pt
      cunet export      → model.onnx          (FP32, dynamic batch, self-describing metadata)
      cunet quantize    → model.int8.onnx     (explicit Q/DQ: TensorRT-ready or CPU-fast)
      cunet compile     → model.engine        (TensorRT, on a GPU machine)
      cunet evaluate    → NME / PCKh of any .pt, .onnx or .engine
      cunet profile     → latency percentiles, throughput, memory

    Start with `cunet demo`: it runs all of the above on built-in synthetic data.
    """


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cunet` console script; returns the exit code."""
    sweep_once()  # temporary folders of killed cunet runs (those whose marker names a process that is gone)
    if "torch" not in sys.modules:
        # OpenMP threads that spin while they wait used 3x the CPU and made a cunet-tiny training step 3x slower
        # (4.6 s vs 1.5 s, 2 threads, batch 16) on 2 cores shared with other work. It only takes effect before torch
        # loads its OpenMP runtime (commands import it lazily); an OMP_WAIT_POLICY the user set wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        # Without standalone mode click catches `Exit` itself and returns its code (e.g. `cunet data check` exiting 1
        # on a bad dataset); command callbacks return None, so an int here can only be that code.
        code = cli.main(args=argv, prog_name="cunet", standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool):
            return code
    except CunetError as e:
        click.echo(f"error: {e}", err=True)
        return 1
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.BadParameter as e:
        if "does not exist" not in e.message:  # a real usage mistake: click's usage hint helps
            e.show()
            return 1
        # A missing input file is bad input, not bad usage: one line and exit 1 like every other file problem.
        click.echo(f"error: {e.format_message()}", err=True)
        return 1
    except click.UsageError as e:  # click's own code is 2; cunet promises 1 for every user mistake
        e.show()
        return 1
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
