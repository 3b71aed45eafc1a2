"""The detections of one image, as ``Detector.predict`` returns them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dynatss.data.records import DatasetMeta
from dynatss.draw.detections import DrawOptions, draw_detections

# Digits kept in to_dict(): a hundredth of a pixel and 1e-4 of a score are below any use.
BOX_DECIMALS = 2
SCORE_DECIMALS = 4


@dataclass(frozen=True, repr=False, eq=False)
class Result:
    """Detections of one image, best first.

    boxes:  [N, 4] float32 xyxy in pixels of the original image
    scores: [N] float32, sigmoid(class logit) x sigmoid(quality logit)
    labels: [N] int64 contiguous class index (0..C-1)
    image:  [3, H, W] uint8 RGB, the image as the detector saw it before resizing (None: unreadable)
    source: the file it was read from, or None for an in-memory image
    meta:   the model's class names and the dataset's category ids
    frame, time: the frame index and its time (s) in a video, else None
    error:  why the input could not be used (``Detector.predict(..., errors="keep")``), else None
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    image: Tensor | None
    source: str | None
    meta: DatasetMeta
    frame: int | None = None
    time: float | None = None
    error: str | None = None

    @classmethod
    def failed(cls, source: str | None, error: str, meta: DatasetMeta, *, frame: int | None = None) -> Result:
        """The result of an input that could not be used: no detections, no image, its error."""
        return cls(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), None, source, meta,
                   frame=frame, error=error)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def class_names(self) -> list[str]:
        """The class name of each detection."""
        return [self.meta.class_names[label] for label in self.labels.tolist()]

    @property
    def width(self) -> int:
        return 0 if self.image is None else int(self.image.shape[-1])

    @property
    def height(self) -> int:
        return 0 if self.image is None else int(self.image.shape[-2])

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        if self.error is not None:
            return f"Result({self.source or 'image'}: error: {self.error})"
        found = ", ".join(f"{name} {score:.2f}" for name, score in zip(self.class_names[:5], self.scores.tolist()))
        more = f", ... ({len(self)} in all)" if len(self) > 5 else ""
        return f"Result({self.source or 'image'}, {self.width}x{self.height}: [{found}{more}])"

    def draw(self, *, labels: bool = True, conf: bool = True, line_width: int | None = None,
             font_size: int | None = None) -> Tensor:
        """The image with the detections drawn: [3, H, W] uint8. Captions name the class
        (``labels``) and the score (``conf``); ``line_width`` and ``font_size`` in pixels (None:
        they grow with the image)."""
        if self.image is None:
            raise ValueError(f"{self.source or 'input'}: nothing to draw ({self.error})")
        options = DrawOptions(labels=labels, conf=conf, line_width=line_width, font_size=font_size)
        return draw_detections(self.image, self.boxes, self.labels, self.scores, self.meta.class_names,
                               options=options)

    def plot(self, *, labels: bool = True, conf: bool = True, line_width: int | None = None,
             font_size: int | None = None):
        """:meth:`draw` as a PIL image (``.show()``, ``.save("out.png")``)."""
        from torchvision.transforms.v2.functional import to_pil_image

        return to_pil_image(self.draw(labels=labels, conf=conf, line_width=line_width, font_size=font_size))

    def detections(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per detection: box (xyxy pixels), score, label, category_id, class_name."""
        rows = []
        for box, score, label in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist()):
            rows.append({
                "box": [round(value, BOX_DECIMALS) for value in box],
                "score": round(score, SCORE_DECIMALS),
                "label": int(label),
                "category_id": int(self.meta.category_ids[label]),
                "class_name": self.meta.class_names[label],
            })
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"source", "width", "height", "detections": [...]}``, with ``frame`` and
        ``time`` for a video frame and ``error`` for an input that could not be used."""
        document: dict[str, Any] = {"source": self.source}
        if self.frame is not None:
            document.update(frame=self.frame, time=self.time)
        if self.error is not None:
            document["error"] = self.error
        return {**document, "width": self.width, "height": self.height, "detections": self.detections()}
