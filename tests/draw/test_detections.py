"""The one detection drawing (predict, report, .plot()): captions readable and inside the frame."""

from __future__ import annotations

import pytest
import torch

from dynatss.draw.detections import (
    caption_boxes,
    class_color,
    draw_detections,
    style_for,
    text_color,
)

HEIGHT, WIDTH = 120, 200
NAMES = ("triangle", "ellipse", "rectangle")


def _rgb(hex_color: str) -> torch.Tensor:
    return torch.tensor([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)], dtype=torch.uint8)


def _mask_of(image: torch.Tensor, hex_color: str) -> torch.Tensor:
    """[H, W] bool: pixels of exactly ``hex_color``."""
    return (image == _rgb(hex_color).view(3, 1, 1)).all(dim=0)


EDGE_BOXES = {
    "top-left": [0, 0, 30, 20],
    "top-right": [WIDTH - 25, 0, WIDTH, 20],
    "bottom-left": [0, HEIGHT - 20, 30, HEIGHT],
    "bottom-right": [WIDTH - 12, HEIGHT - 10, WIDTH, HEIGHT],
    "right edge, mid height": [WIDTH - 8, 50, WIDTH, 70],
    "left of the frame": [-15, 40, 10, 60],
    "middle": [80, 50, 120, 80],
}


@pytest.mark.parametrize("where", list(EDGE_BOXES))
def test_caption_labels_stay_inside_the_frame(where):
    boxes = torch.tensor([EDGE_BOXES[where]], dtype=torch.float32)
    label = caption_boxes(boxes, torch.tensor([[90.0, 16.0]]), (HEIGHT, WIDTH))[0]
    assert label[0] >= 0 and label[1] >= 0 and label[2] <= WIDTH and label[3] <= HEIGHT, (where, label)
    assert torch.allclose(label[2:] - label[:2], torch.tensor([90.0, 16.0]))  # never shrunk


def test_caption_goes_above_the_box_when_there_is_room_else_inside():
    boxes = torch.tensor([[50.0, 40, 90, 80], [50.0, 5, 90, 45]])
    labels = caption_boxes(boxes, torch.tensor([[30.0, 12.0], [30.0, 12.0]]), (HEIGHT, WIDTH))
    assert labels[0].tolist() == [50.0, 28.0, 80.0, 40.0]  # sits on the top edge, outside
    assert labels[1].tolist() == [50.0, 5.0, 80.0, 17.0]  # no room above: inside the top


@pytest.mark.parametrize("where", ["top-right", "bottom-right", "right edge, mid height"])
def test_drawn_label_is_filled_in_the_class_colour_and_not_clipped(where):
    image = torch.full((3, HEIGHT, WIDTH), 128, dtype=torch.uint8)
    box = torch.tensor([EDGE_BOXES[where]], dtype=torch.float32)
    drawn = draw_detections(image, box, torch.tensor([1]), torch.tensor([0.87]), NAMES)
    painted = _mask_of(drawn, class_color(1)).nonzero()  # [P, 2] (y, x)
    assert len(painted) > 0
    # The filled label is wider than the box and ends at the right edge of the image (shifted in).
    assert painted[:, 1].max() == WIDTH - 1
    assert painted[:, 1].min() < box[0, 0] - 20
    assert torch.equal(image, torch.full_like(image, 128))  # input untouched


def test_text_and_lines_grow_with_the_image():
    sizes = [(96, 128), (480, 640), (1080, 1920), (3000, 4000)]
    styles = [style_for(h, w) for h, w in sizes]
    fonts, lines = [s.font_px for s in styles], [s.line_px for s in styles]
    assert fonts == sorted(fonts) and fonts[-1] >= 5 * fonts[1] > fonts[0]
    assert lines == sorted(lines) and lines[-1] > lines[0]
    # The drawn caption's height follows the font: measured in pixels of the label colour.
    heights = []
    for height, width in [(120, 160), (960, 1280)]:
        image = torch.zeros((3, height, width), dtype=torch.uint8)
        box = torch.tensor([[width / 2, height / 2, width / 2 + 20, height / 2 + 20]])
        drawn = draw_detections(image, box, torch.tensor([0]), torch.tensor([0.5]), NAMES)
        label_rows = _mask_of(drawn, class_color(0))[: height // 2].any(dim=1)  # the label: above the box
        heights.append(int(label_rows.sum()))
    expected_ratio = style_for(960, 1280).font_px / style_for(120, 160).font_px  # 36 / 11
    assert heights[1] / heights[0] == pytest.approx(expected_ratio, rel=0.15)


def test_colours_are_stable_per_class_and_text_contrasts():
    assert [class_color(k) for k in range(25)] == [class_color(k) for k in range(25)]
    assert len({class_color(k) for k in range(20)}) == 20  # 20 distinct colours before repeating
    assert class_color(3) == class_color(23)
    assert text_color("#ffffff") == "#000000" and text_color("#1f77b4") == "#ffffff"
    # The same class gets the same colour in two different drawings.
    image = torch.zeros((3, 60, 80), dtype=torch.uint8)
    for boxes in ([[5.0, 20, 30, 50]], [[40.0, 25, 75, 55]]):
        drawn = draw_detections(image, torch.tensor(boxes), torch.tensor([2]), None, NAMES)
        assert _mask_of(drawn, class_color(2)).any()


def test_ground_truth_is_visible_on_dark_and_light_images_and_empty_detections_keep_the_image():
    empty = torch.zeros((0, 4))
    for value in (0, 255):  # white inside black: a light and a dark line on either background
        image = torch.full((3, 60, 80), value, dtype=torch.uint8)
        same = draw_detections(image, empty, torch.zeros(0, dtype=torch.long), torch.zeros(0), NAMES)
        assert torch.equal(same, image) and same is not image
        drawn = draw_detections(image, empty, torch.zeros(0, dtype=torch.long), torch.zeros(0), NAMES,
                                ground_truth=torch.tensor([[10.0, 10, 50, 40]]))
        top_edge = drawn[:, 10:13, 30]  # [3, rows] across the top edge
        assert (top_edge == 0).all(0).any() and (top_edge == 255).all(0).any()
        left_edge = drawn[:, 25, 10:13]
        assert (left_edge == 0).all(0).any() and (left_edge == 255).all(0).any()
        assert torch.equal(drawn[:, 20:30, 20:40], image[:, 20:30, 20:40])  # the inside stays as it was
        assert not torch.equal(drawn, image)
