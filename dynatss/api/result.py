"""The detections of one image, as ``Detector.predict`` returns them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from dynatss.data.records import DatasetMeta
from dynatss.tools.images import draw_detections

# Digits kept in to_dict(): a hundredth of a pixel and 1e-4 of a score are below any use.
BOX_DECIMALS = 2
SCORE_DECIMALS = 4


@dataclass(frozen=True, repr=False, eq=False)
class Result:
    """Detections of one image, best first.

    boxes:  [N, 4] float32 xyxy in pixels of the original image
    scores: [N] float32, sigmoid(class logit) x sigmoid(quality logit)
    labels: [N] int64 contiguous class index (0..C-1)
    image:  [3, H, W] uint8 RGB, the image as the detector saw it before resizing
    source: the file it was read from, or None for an in-memory image
    meta:   the model's class names and the dataset's category ids
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    image: Tensor
    source: str | None
    meta: DatasetMeta

    @property
    def class_names(self) -> list[str]:
        """The class name of each detection."""
        return [self.meta.class_names[label] for label in self.labels.tolist()]

    @property
    def width(self) -> int:
        return int(self.image.shape[-1])

    @property
    def height(self) -> int:
        return int(self.image.shape[-2])

    def __len__(self) -> int:
        return len(self.scores)

    def __repr__(self) -> str:
        found = ", ".join(f"{name} {score:.2f}" for name, score in zip(self.class_names[:5], self.scores.tolist()))
        more = f", ... ({len(self)} in all)" if len(self) > 5 else ""
        return f"Result({self.source or 'image'}, {self.width}x{self.height}: [{found}{more}])"

    def draw(self) -> Tensor:
        """The image with the detections drawn: [3, H, W] uint8."""
        return draw_detections(self.image, self.boxes, self.labels, self.scores, self.meta.class_names)

    def plot(self):
        """The image with the detections drawn, as a PIL image (``.show()``, ``.save("out.png")``)."""
        from torchvision.transforms.v2.functional import to_pil_image

        return to_pil_image(self.draw())

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
        """JSON-ready: ``{"source", "width", "height", "detections": [...]}``."""
        return {"source": self.source, "width": self.width, "height": self.height, "detections": self.detections()}
