"""ignored_anchors: anchors lying mostly inside a crowd / difficult box, by hand and chunk by chunk."""

from __future__ import annotations

import torch

from dynatss.assign import ignored_anchors


def test_anchors_mostly_inside_a_valid_region_are_ignored():
    anchors = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],  # wholly inside region 0: IoF 1
        [5.0, 0.0, 15.0, 10.0],  # half inside: IoF 0.5, at the threshold
        [8.0, 0.0, 18.0, 10.0],  # 20 % inside: IoF 0.2
        [50.0, 50.0, 60.0, 60.0],  # inside region 1, which is padding
        [100.0, 100.0, 104.0, 104.0],  # inside nothing
    ])
    regions = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 70.0, 70.0]]])  # [1, I, 4]
    valid = torch.tensor([[True, False]])
    assert ignored_anchors(anchors, regions, valid).tolist() == [[True, True, False, False, False]]
    assert ignored_anchors(anchors, regions, valid, iof_threshold=0.6).tolist() == [[True, False, False, False, False]]
    assert ignored_anchors(anchors, regions, torch.ones(1, 2, dtype=torch.bool)).tolist() == \
        [[True, True, False, True, False]]


def test_no_regions_and_many_regions_in_chunks():
    anchors = torch.rand(300, 2, generator=torch.Generator().manual_seed(0)) * 100
    anchors = torch.cat((anchors, anchors + 8), dim=1)  # [A, 4]
    assert not ignored_anchors(anchors, torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.bool)).any()
    corners = torch.rand(2, 150, 2, generator=torch.Generator().manual_seed(1)) * 100
    regions = torch.cat((corners, corners + 12), dim=-1)  # [2, 150, 4]: more than one chunk of 64
    valid = torch.rand(2, 150, generator=torch.Generator().manual_seed(2)) < 0.7
    # Slow reference: every (anchor, region) pair.
    inter = (torch.minimum(anchors[None, :, None, 2:], regions[:, None, :, 2:])
             - torch.maximum(anchors[None, :, None, :2], regions[:, None, :, :2])).clamp(min=0).prod(-1)
    iof = inter / 64.0  # [2, A, I], anchors are 8 x 8
    expected = ((iof >= 0.5) & valid[:, None]).any(-1)
    result = ignored_anchors(anchors, regions, valid)
    assert torch.equal(result, expected) and result.any() and not result.all()
