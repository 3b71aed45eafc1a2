import torch

from dynatss.config import InferenceConfig
from dynatss.model.box_coder import BoxCoder
from dynatss.model.outputs import HeadOutputs
from dynatss.model.postprocess import postprocess

C = 2
LOW = -20.0  # logit of a probability that is practically zero
BOX = [10.0, 10.0, 50.0, 50.0]
NEAR_DUPLICATE = [12.0, 12.0, 52.0, 52.0]
FAR = [60.0, 60.0, 90.0, 90.0]
OUTSIDE = [80.0, -10.0, 130.0, 30.0]  # crosses the right and top edges of a 100 x 100 image


def logit(p: float) -> float:
    return torch.logit(torch.tensor(p)).item()


def make_outputs(anchors: list[list[float]], cls: list[dict[int, float]], counts: list[int]) -> HeadOutputs:
    """One image; zero deltas so boxes are the anchors; quality logit 0 (probability 0.5)."""
    a = len(anchors)
    cls_logits = torch.full((1, a, C), LOW)
    for i, classes in enumerate(cls):
        for label, probability in classes.items():
            cls_logits[0, i, label] = logit(probability)
    return HeadOutputs(cls_logits, torch.zeros(1, a, 4), torch.zeros(1, a), torch.tensor(anchors), counts)


def run(outputs: HeadOutputs, cfg: InferenceConfig, image=(100, 100), original=(100, 100)):
    sizes = torch.tensor([image] * outputs.cls_logits.shape[0])
    originals = torch.tensor([original] * outputs.cls_logits.shape[0])
    return postprocess(outputs, sizes, originals, cfg, BoxCoder())


def expected_score(p: float) -> float:
    return p * 0.5  # sigmoid(quality logit 0)


def test_threshold_and_class_aware_nms():
    outputs = make_outputs(
        [BOX, NEAR_DUPLICATE, BOX, FAR],
        [{0: 0.9}, {0: 0.8}, {1: 0.7}, {0: 0.09}],  # FAR scores 0.045 < 0.05
        [4],
    )
    (result,) = run(outputs, InferenceConfig(score_threshold=0.05, nms_threshold=0.6, threshold_on="score"))
    assert result["labels"].tolist() == [0, 1]
    torch.testing.assert_close(result["scores"], torch.tensor([expected_score(0.9), expected_score(0.7)]))
    torch.testing.assert_close(result["boxes"], torch.tensor([BOX, BOX]))
    assert result["labels"].dtype == torch.int64


def test_max_detections_keeps_the_best():
    outputs = make_outputs([BOX, FAR, NEAR_DUPLICATE], [{0: 0.6}, {1: 0.9}, {1: 0.8}], [3])
    (result,) = run(outputs, InferenceConfig(max_detections=2))
    torch.testing.assert_close(result["scores"], torch.tensor([expected_score(0.9), expected_score(0.8)]))
    torch.testing.assert_close(result["boxes"], torch.tensor([FAR, NEAR_DUPLICATE]))


def test_pre_nms_topk_is_per_level():
    outputs = make_outputs([BOX, FAR, BOX, FAR], [{0: 0.9}, {0: 0.8}, {1: 0.3}, {1: 0.2}], [2, 2])
    (result,) = run(outputs, InferenceConfig(pre_nms_topk=1))
    # Best of level 0 and best of level 1, even though level 0's second beats level 1's best.
    torch.testing.assert_close(result["scores"], torch.tensor([expected_score(0.9), expected_score(0.3)]))


def test_clip_to_resized_size_then_map_to_original():
    outputs = make_outputs([OUTSIDE, BOX], [{0: 0.9}, {1: 0.8}], [2])
    (result,) = run(outputs, InferenceConfig(), image=(100, 100), original=(200, 300))
    clipped = torch.tensor([[80.0, 0.0, 100.0, 30.0], BOX])
    scale = torch.tensor([300 / 100, 200 / 100, 300 / 100, 200 / 100])
    torch.testing.assert_close(result["boxes"], clipped * scale)


def test_empty_result_and_batched_equals_single():
    g = torch.Generator().manual_seed(0)
    a = 60
    anchors_xy = torch.rand(a, 2, generator=g) * 80
    anchors = torch.cat((anchors_xy, anchors_xy + 20), dim=1)
    outputs = HeadOutputs(
        torch.randn(3, a, C, generator=g) * 3,
        torch.randn(3, a, 4, generator=g),
        torch.randn(3, a, generator=g),
        anchors,
        [40, 20],
    )
    cfg = InferenceConfig(pre_nms_topk=15, max_detections=10)
    sizes = torch.tensor([[100, 100], [90, 80], [100, 70]])
    originals = torch.tensor([[200, 200], [45, 40], [100, 70]])
    batched = postprocess(outputs, sizes, originals, cfg, BoxCoder())
    for i in range(3):
        single = HeadOutputs(
            outputs.cls_logits[i : i + 1],
            outputs.box_deltas[i : i + 1],
            outputs.quality_logits[i : i + 1],
            anchors,
            [40, 20],
        )
        (expected,) = postprocess(single, sizes[i : i + 1], originals[i : i + 1], cfg, BoxCoder())
        assert len(expected["scores"]) > 0
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(batched[i][key], expected[key])
    nothing = postprocess(outputs, sizes, originals, InferenceConfig(score_threshold=1.0), BoxCoder())
    assert [len(r["boxes"]) for r in nothing] == [0, 0, 0]
    assert nothing[0]["boxes"].shape == (0, 4)


def test_official_rule_thresholds_the_classification_probability_alone():
    """ATSS / Dynamic ATSS (official code): cls > threshold selects, cls x quality ranks and scores."""
    quality = torch.tensor([[0.0, 0.0, 4.0]])  # sigmoid: 0.5, 0.5, ~0.982
    outputs = make_outputs([BOX, FAR, OUTSIDE], [{0: 0.09}, {1: 0.04}, {1: 0.045}], [3])
    outputs = outputs._replace(quality_logits=quality)
    (official,) = run(outputs, InferenceConfig(score_threshold=0.05, threshold_on="cls"))
    (joint,) = run(outputs, InferenceConfig(score_threshold=0.05, threshold_on="score"))
    # cls 0.09 passes although its score 0.045 does not; cls 0.04 and 0.045 fail under both rules.
    assert official["labels"].tolist() == [0]
    torch.testing.assert_close(official["scores"], torch.tensor([0.09 * 0.5]))
    assert joint["labels"].tolist() == []


def test_official_rule_ranks_candidates_by_the_product():
    """pre_nms_topk keeps the best cls x quality among the candidates, not the best cls."""
    outputs = make_outputs([BOX, FAR], [{0: 0.9}, {0: 0.5}], [2])
    outputs = outputs._replace(quality_logits=torch.tensor([[logit(0.1), logit(0.9)]]))
    (result,) = run(outputs, InferenceConfig(pre_nms_topk=1, threshold_on="cls"))
    torch.testing.assert_close(result["boxes"], torch.tensor([FAR]))
    torch.testing.assert_close(result["scores"], torch.tensor([0.5 * 0.9]))


def test_quality_exponent_weighs_the_quality_factor():
    """score = cls x quality ** exponent: 1 the product, 0 cls alone, 0.5 the square root of quality."""
    outputs = make_outputs([BOX, FAR], [{0: 0.6}, {0: 0.5}], [2])
    outputs = outputs._replace(quality_logits=torch.tensor([[logit(0.25), logit(0.81)]]))
    (product,) = run(outputs, InferenceConfig(quality_exponent=1.0))
    (cls_alone,) = run(outputs, InferenceConfig(quality_exponent=0.0))
    (root,) = run(outputs, InferenceConfig(quality_exponent=0.5))
    # Product: FAR 0.5 x 0.81 = 0.405 ranks above BOX 0.6 x 0.25 = 0.15.
    torch.testing.assert_close(product["scores"], torch.tensor([0.405, 0.15]))
    torch.testing.assert_close(product["boxes"], torch.tensor([FAR, BOX]))
    # cls alone: BOX first (0.6 > 0.5).
    torch.testing.assert_close(cls_alone["scores"], torch.tensor([0.6, 0.5]))
    torch.testing.assert_close(cls_alone["boxes"], torch.tensor([BOX, FAR]))
    # Square root: FAR 0.5 x 0.9 = 0.45 above BOX 0.6 x 0.5 = 0.3.
    torch.testing.assert_close(root["scores"], torch.tensor([0.45, 0.3]))
