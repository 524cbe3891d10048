"""``dali-mixup`` command line: one subcommand per module, each imported only when chosen.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS = {
    "bench": ("dali_mixup.bench", "end-to-end throughput: mixup iterator vs plain DALI, DALI-native mixup and the torchvision CPU baseline"),
    "doctor": ("dali_mixup.doctor", "check versions, GPU, hardware JPEG decoder, and run a tiny pipeline against the CPU twin"),
    "prepare-digits": ("dali_mixup.digits", "write scikit-learn's digits as an ImageFolder of JPEGs (train/ and test/)"),
    "train": ("dali_mixup.train", "train an image classifier with the mixup loader (ResNet-18 or a small CNN)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dali-mixup", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            p.set_defaults(_missing=module)
        p.set_defaults(_module=module)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "_missing", None):
        print(f"dali-mixup {args.command}: not available in this build ({args._missing} missing)", file=sys.stderr)
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
