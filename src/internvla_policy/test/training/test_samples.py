"""Training samples: grounding labels, normalised chunks, overlays and grounding answers."""

from __future__ import annotations

import json

import numpy as np

from internvla_policy.data import compute_statistics
from internvla_policy.training.samples import TrainingData, open_reader, read_grounding

from .conftest import ACTION_KEYS, CAMERAS, LENGTHS, square_box


def _data(dataset) -> TrainingData:
    reader = open_reader(dataset, CAMERAS, ACTION_KEYS, 16, None)
    return TrainingData(reader, compute_statistics(reader), read_grounding(dataset), log=lambda _: None)


def test_grounding_labels_hold_the_named_targets_that_are_visible(dataset) -> None:
    labels = read_grounding(dataset)
    assert sorted(labels) == [0, 1]
    assert labels[0].frames.tolist() == [0, 2, 4, 6] and labels[1].frames.tolist() == [0, 2, 4]
    at_three = labels[0].at(3)  # the latest labelled frame at or before 3 is 2
    assert [(b.label, b.x_min, b.y_min, b.x_max, b.y_max) for b in at_three.boxes] == [
        ("red block", *map(float, square_box(2)))
    ]
    assert [b.label for b in labels[1].at(0).boxes] == ["red block"]  # the bowl has no box: left out


def test_action_batches_are_normalised_chunks_padded_with_the_last_action(dataset) -> None:
    data = _data(dataset)
    assert len(data) == sum(LENGTHS)
    batch = data.action_batch(np.random.default_rng(0), 5)
    assert batch.actions.shape == (5, 16, 7) and batch.actions.dtype.is_floating_point
    assert batch.actions[..., :6].abs().max() <= 1.0
    assert set(np.unique(batch.actions[..., 6].numpy())) <= {0.0, 1.0}  # the gripper passes through
    assert all(len(views) == 2 for views in batch.views)
    assert {views[0].size for views in batch.views} == {(64, 64)}  # as recorded; the model resizes
    chunk = data.actions[0][np.minimum(np.arange(6, 22), LENGTHS[0] - 1)]
    assert (chunk[2:] == chunk[-1]).all()


def test_overlay_draws_the_target_box_on_the_labelled_camera_only(dataset) -> None:
    data = _data(dataset)
    plain = [np.asarray(view) for view in data.views(0, 4)]
    drawn = [np.asarray(view) for view in data.views(0, 4, overlay=True)]
    assert not np.array_equal(plain[0], drawn[0]) and np.array_equal(plain[1], drawn[1])
    changed = (plain[0] != drawn[0]).any(axis=2)
    x1, y1, x2, y2 = square_box(4)
    assert changed[y1 + 4, x1] and changed[y1 + 4, x2 - 1]  # the outline's left and right sides
    assert not changed[y2 + 5 :].any() and not changed[:, : x1 - 1].any()  # nothing below or left of it


def test_grounding_answers_are_qwen_json_in_the_answer_pixels(dataset) -> None:
    data = _data(dataset)
    batch = data.grounding_batch(
        np.random.default_rng(1),
        4,
        prompt=lambda text: f"where: {text}",
        answer_size=lambda w, h: (2 * w, 2 * h),
    )
    for image, prompt, answer in zip(batch.images, batch.prompts, batch.answers, strict=True):
        assert image.size == (64, 64) and prompt.startswith("where: ")
        (box,) = json.loads(answer)
        assert list(box) == ["label", "bbox_2d"] and box["label"] == "red block"
        x1, y1, x2, y2 = box["bbox_2d"]
        assert (y1, y2, x2 - x1) == (40, 56, 16)  # twice the 64-px label: the answer image is 128 px
