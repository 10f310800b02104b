"""The `trad` command: one parser, subcommands registered by their modules, and one place
where a user's mistake becomes one readable line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import json
import sys

from app import __version__
from app.errors import TradError

__all__ = ["main", "build_parser"]

# Modules that add subcommands with ``register(subparsers)``; each stays importable alone.
_COMMAND_MODULES = ("app.cli_backtest", "app.cli_data", "app.cli_train", "app.cli_jobs",
                    "app.cli_strategies")


class _Parser(argparse.ArgumentParser):
    """argparse with a mistake on one line, like every other mistake (the usage is one
    ``--help`` away); subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    parser = _Parser(prog="trad", description="Find trading-strategy parameters that hold up, "
                     "and say how far to trust them.")
    parser.add_argument("--version", action="version", version=f"trad {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(subparsers)
    return parser


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> int:
    import os

    from app.logging_setup import configure_logging

    # The command prints what a person needs; logs stay quiet unless asked for.
    configure_logging(os.environ.get("TRAD_LOG_LEVEL", "ERROR").upper())
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        # Flushed here, not at exit, so a reader gone away (| head) is a BrokenPipeError
        # caught below rather than Python's "Exception ignored" and status 120.
        sys.stdout.flush()
        return code
    except TradError as exc:
        print(f"trad: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"trad: error: no such file: {exc.filename}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"trad: error: invalid JSON ({exc.msg} at column {exc.colno})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trad: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (| head): stop quietly, and keep Python's own flush at exit
        # from writing to the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
