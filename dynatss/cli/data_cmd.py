"""``dynatss data convert`` and ``dynatss data check``."""

from __future__ import annotations

import argparse

from dynatss.data.check import check_dataset
from dynatss.data.convert import convert_dataset
from dynatss.data.datasets import FORMATS, detect_format, list_splits
from dynatss.data.decode import DEFAULT_MAX_PIXELS
from dynatss.errors import DynatssError


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="convert and check datasets (COCO, VOC, YOLO)")
    actions = data.add_subparsers(dest="data_command", required=True)

    convert = actions.add_parser("convert", help="convert a dataset between COCO, VOC and YOLO layouts")
    convert.add_argument("src", help="source dataset folder")
    convert.add_argument("--from", dest="src_format", choices=FORMATS, required=True)
    convert.add_argument("--to", dest="dst_format", choices=FORMATS, required=True)
    convert.add_argument("--out", required=True, help="output folder")
    convert.add_argument("--split", action="append", help="split to convert (repeatable; default: all)")
    convert.add_argument("--classes", help="VOC class names, comma-separated, in label order")
    convert.set_defaults(func=run_convert)

    check = actions.add_parser("check", help="summarise a dataset and list every problem")
    check.add_argument("path", help="dataset folder")
    check.add_argument("--format", choices=FORMATS, help="dataset format (default: detected)")
    check.add_argument("--split", action="append", help="split to check (repeatable; default: all)")
    check.add_argument("--classes", help="VOC class names, comma-separated; other names are errors")
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too (default: on errors)")
    check.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                       help=f"refuse images with more pixels (default: {DEFAULT_MAX_PIXELS})")
    check.add_argument("--cache", action=argparse.BooleanOptionalAction, default=False,
                       help="trust the image-scan cache for files whose size and time are unchanged "
                       "(default --no-cache: decode every image afresh, and refresh the cache for train)")
    check.set_defaults(func=run_check)


def _classes(text: str | None) -> list[str] | None:
    return [name.strip() for name in text.split(",") if name.strip()] if text else None


def run_convert(args: argparse.Namespace) -> int:
    lines = convert_dataset(
        args.src,
        args.src_format,
        args.dst_format,
        args.out,
        splits=args.split,
        class_names=_classes(args.classes),
    )
    print("\n".join(lines))
    return 0


def run_check(args: argparse.Namespace) -> int:
    if args.max_pixels < 1:
        raise DynatssError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    fmt = args.format or detect_format(args.path)
    splits = args.split or list_splits(fmt, args.path)
    result = check_dataset(
        fmt, args.path, splits, class_names=_classes(args.classes), strict=args.strict, max_pixels=args.max_pixels,
        use_cache=args.cache,
    )
    print(f"{args.path} ({fmt})")
    print("\n".join(result.lines))
    return 1 if result.failed else 0
