"""`dynatss export`: trained weights as ONNX (any batch and size, post-processing inside) or safetensors."""

from __future__ import annotations

import argparse

from dynatss.api.export import FORMATS, onnx_io_names
from dynatss.errors import DynatssError

from .options import add_parser, add_weights_options, load_detector, split_overrides


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_parser(subparsers, "export", help="export trained weights to ONNX or safetensors")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (e.g. the inference rule)")
    add_weights_options(parser, weights_help="checkpoint (.pth) or .safetensors file",
                        out_help="output file (default: the weights path with the format's suffix, in RUN_DIR/checkpoints)")
    parser.add_argument("--format", choices=FORMATS, default="onnx",
                        help="onnx: any batch and image size, post-processing inside (docs/export.md)")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    positional, overrides = split_overrides(args.overrides)
    if positional:
        raise DynatssError(f"unexpected argument {positional[0]!r} (give the config as --config)")
    args.device = "cpu" if args.device == "auto" else args.device  # the graph is traced on the CPU
    path = load_detector(args, overrides).export(args.out, format=args.format)
    print(f"wrote {path}")
    if args.format == "onnx":
        inputs, outputs = onnx_io_names(path)
        print(f"inputs: {', '.join(inputs)}")
        print(f"outputs: {', '.join(outputs)}")
    return 0
