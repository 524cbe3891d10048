"""``dali-mixup`` command line: one subcommand per module, only the one that runs is imported.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``. The top-level
parser lists the commands from the ``COMMANDS`` table (name, module, one-line help) without
importing any of them; ``main`` imports the chosen command's module alone, to add its options
and run it, so ``dali-mixup doctor --help`` imports neither the bench nor the training script.

A usage error is one line on stderr and exit status 2, for example::

    $ dali-mixup bench --batch-size 0
    dali-mixup bench: error: argument --batch-size: expected an integer >= 1, got 0 (see dali-mixup bench --help)

Ctrl-C ends a command with "dali-mixup COMMAND: interrupted" and exit status 130; a closed pipe
on stdout (``dali-mixup doctor | head -1``) ends it quietly with 141, as SIGPIPE would.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Iterable, List, Optional

# name -> (module, one-line help)
COMMANDS = {
    "bench": ("dali_mixup.tools.bench", "end-to-end throughput: mixup iterator vs plain DALI, DALI-native mixup and the torchvision CPU baseline"),
    "doctor": ("dali_mixup.tools.doctor", "check versions, GPU, hardware JPEG decoder, and run a tiny pipeline against the CPU twin"),
    "prepare-digits": ("dali_mixup.tools.digits", "write scikit-learn's digits as an ImageFolder of JPEGs (train/ and test/)"),
    "train": ("dali_mixup.tools.train", "train an image classifier with the mixup loader (ResNet-18 or a small CNN)"),
}


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (who, what, where the help is), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(commands: Optional[Iterable[str]] = None) -> argparse.ArgumentParser:
    """The ``dali-mixup`` parser.

    Args:
        commands: the commands whose options are added, importing their modules; ``None`` (the
            default) adds every command's (for tests and documentation). ``main`` passes only
            the command that runs. The other commands are listed by name and help alone.

    Returns:
        The parser; a parsed namespace carries ``command``, ``_module`` (the command's module),
        ``_parser`` (the command's sub-parser) and ``_missing`` (set when the command's module
        is not in this build).

    Raises:
        ValueError: a name in ``commands`` is not a command.
    """
    wanted = set(COMMANDS if commands is None else commands)
    unknown = sorted(wanted - set(COMMANDS))
    if unknown:
        raise ValueError(f"unknown command(s) {unknown}; choose from {', '.join(COMMANDS)}")
    parser = _Parser(prog="dali-mixup", description="mixup fused into an NVIDIA DALI input pipeline: the tools. "
                     "'dali-mixup COMMAND --help' lists a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module, _parser=p)
        if name not in wanted:
            continue
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            p.set_defaults(_missing=module)
    return parser


def _command(argv: List[str]) -> Optional[str]:
    """The command ``argv`` names: its first word that is not an option (the top-level parser
    has no option but ``--help``), if it is a command."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    name = _command(argv)
    args, extra = build_parser([name] if name else []).parse_known_args(argv)
    if extra:
        args._parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "_missing", None):
        print(f"dali-mixup {args.command}: not available in this build ({args._missing} missing)", file=sys.stderr)
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: one line and the shell's status for SIGINT, not a traceback
        print(f"\ndali-mixup {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dali-mixup doctor | head -1`: the reader left; end quietly as a SIGPIPE would
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the final flush at exit must not fail again
        return 141


if __name__ == "__main__":
    sys.exit(main())
