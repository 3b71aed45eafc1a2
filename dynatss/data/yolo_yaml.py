"""YOLO ``data.yaml`` as ultralytics and Roboflow write it: where each split's images are, and the classes.

    path: ../datasets/coco8   # optional dataset root, relative to this file's folder (default: the folder)
    train: images/train        # a folder, a .txt list of images, or a list of these; relative to `path`
    val: ../valid/images       # Roboflow writes `../<split>/images`: resolved like ultralytics does
    names: [cat, dog]          # or {0: cat, 1: dog}; `nc` (optional) must agree

A split entry that does not exist and starts with ``../`` is looked up again without it (the file
then sits inside the export, which is how ultralytics reads Roboflow exports). Without a yaml entry,
a split is a folder: ``images/<split>/`` (dynatss's own layout) or ``<split>/images/`` (Roboflow's).
Split names are matched as users write them: ``val``, ``valid`` and ``validation`` are one split.
Labels sit where ultralytics looks: the image path with its last ``images`` folder named ``labels``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dynatss.data.splits import split_names
from dynatss.errors import DynatssError

DATA_YAML_NAMES = ("data.yaml", "data.yml")
IMAGES_FOLDER, LABELS_FOLDER = "images", "labels"
ROBOFLOW_PARENT_PREFIX = "../"


def find_data_yaml(root: Path) -> Path | None:
    """``root`` itself if it is a YAML file, else ``root/data.yaml`` (or ``.yml``) if present."""
    root = Path(root)
    if root.is_file() and root.suffix in (".yaml", ".yml"):
        return root
    return next((root / name for name in DATA_YAML_NAMES if (root / name).is_file()), None)


@dataclass(frozen=True)
class DataYaml:
    """A parsed data.yaml: its file, the dataset root, class names and the raw split entries."""

    file: Path
    root: Path
    names: list[str]
    entries: dict[str, Any] = field(default_factory=dict)  # split key -> str | list[str], as written

    def split_sources(self, split: str) -> list[Path]:
        """The folders / list files holding ``split``'s images; a one-line error naming the file if none."""
        for name in split_names(split):
            if name in self.entries:
                return [self._resolve(name, value) for value in _as_list(self.entries[name])]
        for name in split_names(split):
            for folder in (self.root / IMAGES_FOLDER / name, self.root / name / IMAGES_FOLDER):
                if folder.is_dir():
                    return [folder]
        known = ", ".join(self.splits()) or "none"
        raise DynatssError(
            f"{self.file}: no split '{split}' (splits: {known}; no {IMAGES_FOLDER}/{split}/ or "
            f"{split}/{IMAGES_FOLDER}/ folder either)"
        )

    def _resolve(self, key: str, value: str) -> Path:
        """ultralytics' rule: relative to the root; a missing ``../x`` is retried as ``x``."""
        resolved = (self.root / value).resolve()
        if not resolved.exists() and value.startswith(ROBOFLOW_PARENT_PREFIX):
            resolved = (self.root / value[len(ROBOFLOW_PARENT_PREFIX) :]).resolve()
        if not resolved.exists():
            raise DynatssError(f"{self.file}: {key}: '{value}' not found (looked for {resolved})")
        return resolved

    def split_keys(self) -> list[str]:
        return list(self.entries)

    def splits(self) -> list[str]:
        """Every split present: data.yaml's entries, then the folder layouts' (one name per folder)."""
        found: dict[str, Path] = {}
        for key in self.split_keys():
            try:
                found[key] = self.split_sources(key)[0]
            except DynatssError:
                continue  # listed but missing: reading that split reports it
        for pattern in (f"{IMAGES_FOLDER}/*", f"*/{IMAGES_FOLDER}"):
            for folder in sorted(self.root.glob(pattern)):
                name = folder.name if pattern.startswith(IMAGES_FOLDER) else folder.parent.name
                if folder.is_dir() and folder.resolve() not in {p.resolve() for p in found.values()}:
                    found.setdefault(name, folder)
        return list(found)


# Keys of a data.yaml that are not splits (ultralytics, Roboflow).
_NOT_SPLITS = frozenset({"path", "names", "nc", "download", "roboflow", "yaml_file", "channels"})


def read_data_yaml(root: str | Path) -> DataYaml:
    """Parse ``root/data.yaml`` (or ``root`` when it is the YAML file)."""
    root = Path(root)
    file = find_data_yaml(root)
    if file is None:
        raise DynatssError(f"{root / DATA_YAML_NAMES[0]}: YOLO data.yaml not found")
    try:
        data = yaml.safe_load(read_text(file))
    except yaml.YAMLError as error:
        raise DynatssError(f"{file}: not valid YAML ({error})".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise DynatssError(f"{file}: expected a mapping (train, val, names, ...)")
    dataset_root = file.parent
    if data.get("path"):
        dataset_root = (file.parent / str(data["path"])).resolve()
        if not dataset_root.is_dir():
            raise DynatssError(f"{file}: path: '{data['path']}' not found (looked for {dataset_root})")
    entries = {
        str(key): value for key, value in data.items()
        if str(key) not in _NOT_SPLITS and _is_split_value(value)
    }
    return DataYaml(file=file, root=dataset_root, names=_class_names(data, file), entries=entries)


def read_text(path: Path) -> str:
    """A YOLO text file (data.yaml, labels, image lists): UTF-8, with or without a byte order mark."""
    return Path(path).read_text(encoding="utf-8-sig")


def _is_split_value(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _class_names(data: dict[str, Any], file: Path) -> list[str]:
    """``names`` as a list or an index -> name mapping; ``nc`` alone gives class0, class1, ..."""
    names, count = data.get("names"), _class_count(data.get("nc"), file)
    if isinstance(names, dict):
        try:
            by_index = {int(key): str(value) for key, value in names.items()}
        except (TypeError, ValueError):
            raise DynatssError(f"{file}: names: keys must be class indices 0..{len(names) - 1}") from None
        if sorted(by_index) != list(range(len(by_index))):
            raise DynatssError(f"{file}: names: indices must be 0..{len(by_index) - 1}, got {sorted(by_index)}")
        names = [by_index[index] for index in range(len(by_index))]
    elif names is None and isinstance(count, int) and count > 0:
        names = [f"class{index}" for index in range(count)]
    if not isinstance(names, list) or not names:
        raise DynatssError(f"{file}: needs a non-empty 'names' list (or mapping index -> name)")
    if count is not None and count != len(names):
        raise DynatssError(f"{file}: nc is {count} but names lists {len(names)} classes")
    return [str(name) for name in names]


def _class_count(value: Any, file: Path) -> int | None:
    """``nc`` as an integer; ultralytics also accepts it written as a string (``nc: '2'``) or ``2.0``."""
    if value is None:
        return None
    try:
        count = float(str(value).strip()) if not isinstance(value, bool) else math.nan
    except ValueError:
        count = math.nan
    if not count.is_integer() or count < 0:
        raise DynatssError(f"{file}: nc: expected a number of classes, got {value!r}")
    return int(count)


def label_path(image: Path) -> Path:
    """Where ultralytics looks for an image's labels: its last ``images`` folder named ``labels``, .txt."""
    parts = list(image.parts)
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == IMAGES_FOLDER:
            parts[index] = LABELS_FOLDER
            break
    return Path(*parts).with_suffix(".txt")
