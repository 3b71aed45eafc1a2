"""`dynatss` command line: one sub-command module per area, errors printed on one line.

Every command that loads weights shares the same options (dynatss.cli.options): ``--weights``,
``--config``, ``key=value`` overrides, ``--device`` (default auto) and ``--out`` (default: under the
weights' run directory).
"""

from __future__ import annotations

import argparse
import sys

from dynatss.errors import DynatssError, Terminated, raise_on_sigterm
from dynatss.version import __version__

from . import assign_cmd, data_cmd, eval_cmd, export_cmd, predict_cmd, report_cmd, train_cmd

# torch's messages when an allocation fails (CPU allocator, CUDA caching allocator).
_OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "OutOfMemoryError")
# Each module exposes register(subparsers) and sets `func` on its parsers.
COMMAND_MODULES = (train_cmd, eval_cmd, predict_cmd, export_cmd, report_cmd, assign_cmd, data_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynatss", description="One-stage detectors with dynamic label assignment (Dynamic ATSS)."
    )
    parser.add_argument("--version", action="version", version=f"dynatss {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    raise_on_sigterm()
    try:
        result = args.func(args)
    except DynatssError as error:
        print(f"dynatss {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the machine, not dynatss: a vanished file, a full disk, permissions
        where = f"{error.filename}: " if error.filename else ""
        print(f"dynatss {args.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"dynatss {args.command}: error: out of memory", file=sys.stderr)
        return 2
    except RuntimeError as error:  # torch reports allocation failures (CPU and CUDA) this way
        if not any(text in str(error) for text in _OUT_OF_MEMORY):
            raise
        first = str(error).strip().splitlines()[0]
        print(f"dynatss {args.command}: error: out of memory ({first[:200]})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dynatss {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        kept = "; the last checkpoint is kept (continue with --resume)" if args.command == "train" else ""
        print(f"dynatss {args.command}: terminated (SIGTERM){kept}", file=sys.stderr)
        return 128 + Terminated.SIGNAL
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
