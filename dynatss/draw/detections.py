"""Detections drawn so that people can read them at any image size (issue 10).

A leaf of the package (docs/architecture.md): it knows PIL, matplotlib's font file and torch
tensors, nothing of dynatss. One drawing for ``predict``, ``report`` and the Python API's
``.plot()``: box outlines in a
per-class colour, and a caption "name score" on a filled label of the same colour with black or
white text, whichever contrasts more. Text and line width scale with the image (a fixed 10 px font
is unreadable on a 4000 px photo and swamps a 100 px crop). Captions sit above the box's top-left
corner, inside the box's top edge when there is no room above, and are shifted so that they never
leave the frame (torchvision's ``draw_bounding_boxes`` places them inside the box and lets them run
off the right edge, hence PIL here). The font is matplotlib's DejaVu Sans, so no system font is
needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import matplotlib
import torch
from PIL import ImageDraw, ImageFont
from torch import Tensor
from torchvision.io import encode_jpeg, encode_png
from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image

FONT_FILE = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
# Caption font size (px) per pixel of the image's mean side, and its floor: 16 px on 640 x 480.
FONT_PER_PIXEL = 0.028
MIN_FONT_PX = 11
# Outline width (px) per pixel of the mean side, and its floor: 2 px on 640 x 480, 10 px on 4000 x 3000.
LINE_PER_PIXEL = 0.003
MIN_LINE_PX = 1
# Padding around the caption text inside its label, as a fraction of the font size.
LABEL_PAD_FRACTION = 0.15
# matplotlib's tab10, then tab20's light shades: each class keeps its colour across images.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
           "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
           "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")  # fmt: skip
# Ground truth: a white outline inside a black one, visible on light and dark images alike.
GROUND_TRUTH_COLOR = "#ffffff"
GROUND_TRUTH_HALO = "#000000"
JPEG_QUALITY = 95
# ITU-R BT.601 luma; above this (0..255) a label is light and gets black text.
LIGHT_LABEL_LUMA = 150.0


@dataclass(frozen=True)
class DrawStyle:
    """Sizes in pixels for one image: caption font, box outline, label padding."""

    font_px: int
    line_px: int
    pad_px: int


@dataclass(frozen=True)
class DrawOptions:
    """What to draw: captions with the class name (``labels``) and the score (``conf``); line width
    and font size in pixels (None: grow with the image, :func:`style_for`)."""

    labels: bool = True
    conf: bool = True
    line_width: int | None = None
    font_size: int | None = None


def style_for(height: int, width: int, options: DrawOptions = DrawOptions()) -> DrawStyle:
    """Font and line sizes that grow with the image (its mean side), with readable floors, unless
    ``options`` fixes them."""
    side = (height + width) / 2
    font_px = options.font_size or max(MIN_FONT_PX, round(FONT_PER_PIXEL * side))
    line_px = options.line_width or max(MIN_LINE_PX, round(LINE_PER_PIXEL * side))
    return DrawStyle(font_px, line_px, max(1, round(LABEL_PAD_FRACTION * font_px)))


def class_color(label: int) -> str:
    """The colour of class ``label`` ("#rrggbb"), the same in every drawing."""
    return PALETTE[label % len(PALETTE)]


def text_color(background: str) -> str:
    """Black on light labels, white on dark ones."""
    red, green, blue = (int(background[i : i + 2], 16) for i in (1, 3, 5))
    return "#000000" if 0.299 * red + 0.587 * green + 0.114 * blue > LIGHT_LABEL_LUMA else "#ffffff"


@lru_cache(maxsize=32)
def caption_font(size_px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_FILE), size=size_px)


def caption_boxes(boxes: Tensor, label_sizes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Where each caption's label goes: [N, 4] xyxy, inside the ``(height, width)`` frame.

    boxes: [N, 4] xyxy detections; label_sizes: [N, 2] (width, height) of each label. A label sits
    on top of its box's top-left corner, or just inside the box when the box touches the top of the
    image, then is moved left/up as far as needed to stay in the frame (a label wider than the
    image starts at x = 0).
    """
    height, width = image_size
    label_w, label_h = label_sizes.to(boxes.dtype).unbind(-1)  # [N], [N]
    left, top = boxes[:, 0].clamp(min=0), boxes[:, 1].clamp(min=0)
    above = top - label_h
    y1 = torch.where(above >= 0, above, top)
    x1 = torch.minimum(left, width - label_w).clamp(min=0)
    y1 = torch.minimum(y1, height - label_h).clamp(min=0)
    return torch.stack([x1, y1, x1 + label_w, y1 + label_h], dim=-1)


def draw_detections(
    image: Tensor,
    boxes: Tensor,
    labels: Tensor,
    scores: Tensor | None,
    class_names: tuple[str, ...] | list[str],
    *,
    ground_truth: Tensor | None = None,
    options: DrawOptions = DrawOptions(),
) -> Tensor:
    """Draw ``[N, 4]`` xyxy boxes on a ``[3, H, W]`` uint8 image; returns a new ``[3, H, W]`` uint8.

    Captions read "name score" (``scores`` None or ``options.conf`` False: the name alone; no
    caption when ``options.labels`` and ``options.conf`` are both False). ``ground_truth`` [M, 4]
    xyxy boxes are drawn first, white inside black at the detections' line width, so they show on
    any background and detections stay on top of them.
    """
    height, width = image.shape[-2:]
    style = style_for(height, width, options)
    picture = to_pil_image(image)
    draw = ImageDraw.Draw(picture)
    if ground_truth is not None:
        for x1, y1, x2, y2 in _clipped(ground_truth, height, width).tolist():
            halo = style.line_px
            draw.rectangle((x1, y1, x2, y2), outline=GROUND_TRUTH_HALO, width=style.line_px + 2 * halo)
            draw.rectangle((x1 + halo, y1 + halo, max(x1 + halo, x2 - halo), max(y1 + halo, y2 - halo)),
                           outline=GROUND_TRUTH_COLOR, width=style.line_px)
    if boxes.numel():
        _draw_boxes_and_captions(draw, boxes.float(), labels, scores if options.conf else None, class_names,
                                 style, (height, width), show_names=options.labels)
    return pil_to_tensor(picture)


def encode_image(image: Tensor, suffix: str) -> bytes:
    """Encode ``[3, H, W]`` uint8 as JPEG for .jpg/.jpeg, else PNG."""
    if suffix.lower() in (".jpg", ".jpeg"):
        return encode_jpeg(image, quality=JPEG_QUALITY).numpy().tobytes()
    return encode_png(image).numpy().tobytes()


def _clipped(boxes: Tensor, height: int, width: int) -> Tensor:
    """Boxes [N, 4] clipped to the last pixel row/column, so edges on the border stay visible."""
    limits = boxes.new_tensor([width - 1, height - 1, width - 1, height - 1]).float()
    clipped = torch.minimum(boxes.float(), limits).clamp(min=0)
    clipped[:, 2:] = torch.maximum(clipped[:, 2:], clipped[:, :2])  # PIL needs x1 >= x0
    return clipped


def _caption(name: str, score: float | None) -> str:
    return name if score is None else f"{name} {score:.2f}".strip()


def _draw_boxes_and_captions(draw: ImageDraw.ImageDraw, boxes: Tensor, labels: Tensor, scores: Tensor | None,
                             class_names, style: DrawStyle, image_size: tuple[int, int], *, show_names: bool) -> None:
    colors = [class_color(int(c)) for c in labels]
    for box, color in zip(_clipped(boxes, *image_size).tolist(), colors):
        draw.rectangle(box, outline=color, width=style.line_px)
    if not show_names and scores is None:
        return
    font = caption_font(style.font_px)
    names = [class_names[int(c)] if show_names else "" for c in labels]
    captions = [_caption(name, None if scores is None else float(s))
                for name, s in zip(names, scores if scores is not None else labels)]
    text_boxes = torch.tensor([draw.textbbox((0, 0), text, font=font) for text in captions],
                              dtype=torch.float32)  # [N, 4] ink extent relative to the anchor
    sizes = text_boxes[:, 2:] + 2 * style.pad_px  # [N, 2] label (width, height)
    places = caption_boxes(boxes, sizes, image_size)  # [N, 4]
    # Highest score last, so its caption is on top where captions overlap.
    order = range(len(captions)) if scores is None else scores.argsort().tolist()
    for index in order:
        x1, y1, x2, y2 = places[index].tolist()
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=colors[index])
        draw.text((x1 + style.pad_px, y1 + style.pad_px), captions[index], font=font,
                  fill=text_color(colors[index]))
