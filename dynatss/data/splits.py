"""Split names as users write them: Roboflow calls the validation split ``valid``, ultralytics ``val``."""

from __future__ import annotations

# Names of one split; any one finds the others (a data.yaml key, a folder, an annotation file).
SPLIT_ALIASES = (("val", "valid", "validation"),)


def split_names(split: str) -> list[str]:
    """``split`` first, then the names that mean the same split (``valid`` -> ``val``, ``validation``)."""
    for group in SPLIT_ALIASES:
        if split in group:
            return [split, *(name for name in group if name != split)]
    return [split]
