"""Unnormalisation against upstream semantics, and the inference worker on the tiny model."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from internvla_policy.control.controller import PolicyController
from internvla_policy.control.inference import InferenceRequest, InferenceWorker
from internvla_policy.control.model_policy import ModelChunkPolicy, set_torch_threads
from internvla_policy.control.observation import CameraFrame
from internvla_policy.control.state import PolicyState
from internvla_policy.model import load_for_inference
from internvla_policy.model.normalization import unnormalize_actions
from internvla_policy.model.tiny import write_tiny_run

sys.path.insert(0, str(Path(__file__).parent))
from policy_panda import HOME, JOINTS, profile

SHARED = Path(os.environ["INTERNVLA_SHARED_DIR"])
PROBE = SHARED / "reference" / "tiny_a" / "unnormalize_probe"
STATS = SHARED / "reference" / "tiny_a" / "run" / "dataset_statistics.json"


def test_unnormalize_matches_upstream_probe():
    if not (PROBE / "normalized_in.npy").is_file():
        pytest.skip(f"reference probe not found under {PROBE} (set INTERNVLA_SHARED_DIR)")
    stats = json.loads(STATS.read_text())["franka"]["action"]
    expected = np.load(PROBE / "unnormalized_out.npy")
    actual = unnormalize_actions(np.load(PROBE / "normalized_in.npy"), stats)
    assert actual.dtype == np.float64
    np.testing.assert_array_equal(actual, expected)


def test_unnormalize_semantics_by_hand():
    # Clip to [-1, 1]; gripper (dim 6) -> 1 where >= 0.5 else 0, passed through (mask false);
    # masked dims -> 0.5 (a + 1)(q99 - q01) + q01.
    stats = {"q01": [-0.1] * 6 + [0.0], "q99": [0.3] * 6 + [1.0], "mask": [True] * 6 + [False]}
    normalized = np.array([[-2.0, -1.0, 0.0, 0.5, 1.0, 3.0, 0.5], [0, 0, 0, 0, 0, 0, 0.4999]], np.float32)
    expected = np.array([[-0.1, -0.1, 0.1, 0.2, 0.3, 0.3, 1.0], [0.1] * 6 + [0.0]])
    np.testing.assert_allclose(unnormalize_actions(normalized, stats), expected, atol=1e-7)


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory) -> ModelChunkPolicy:
    run = write_tiny_run(tmp_path_factory.mktemp("tiny"), seed=0)
    model = load_for_inference(str(run), base_vlm="", device="cpu", dtype="float32", share=True)
    return ModelChunkPolicy(model, cfg_scale=1.5, ddim_steps=10, seed=0, unnorm_key=None)


def test_chunks_are_unnormalised_with_the_checkpoint_statistics(tiny_policy):
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    prediction = tiny_policy.predict([image], "pick up the red block.")
    assert prediction.actions.shape == (16, 7) and prediction.actions.dtype == np.float64
    stats = tiny_policy._model.norm_stats[tiny_policy.unnorm_key]["action"]
    np.testing.assert_array_equal(prediction.actions, unnormalize_actions(prediction.normalized, stats))
    assert set(np.unique(prediction.actions[:, 6])) <= {0.0, 1.0}
    assert tiny_policy.view_size(640, 480) == (224, 224)  # the config resizes to image_size first


def test_unknown_unnorm_key_fails_at_start(tiny_policy):
    with pytest.raises(ValueError, match="unnorm_key"):
        ModelChunkPolicy(tiny_policy._model, cfg_scale=1.5, ddim_steps=10, seed=None, unnorm_key="bridge")


class FailsOnce:
    """The tiny policy with one model failure first: what a CUDA error or a bad checkpoint gives."""

    def __init__(self, policy: ModelChunkPolicy) -> None:
        self._policy, self._failed = policy, False

    def view_size(self, width: int, height: int) -> tuple[int, int]:
        return self._policy.view_size(width, height)

    def predict(self, images: list[np.ndarray], instruction: str):
        if not self._failed:
            self._failed = True
            raise RuntimeError("simulated model failure")
        return self._policy.predict(images, instruction)


def test_worker_feeds_the_controller_and_survives_a_model_error(tiny_policy):
    now = [100.0]
    # The clock stands still while the model runs, so nothing goes stale and no step is skipped.
    controller = PolicyController.from_params(profile(), lambda: now[0])
    controller.set_model_ready()
    controller.on_instruction("pick up the red block.", now[0])
    controller.on_joint_state(list(JOINTS), list(HOME), now[0], now[0])
    errors: list[Exception] = []
    failed, delivered = threading.Event(), threading.Event()

    def report(error: Exception) -> None:
        errors.append(error)
        failed.set()

    def deliver(result) -> None:
        controller.on_chunk(result)
        delivered.set()

    worker = InferenceWorker(FailsOnce(tiny_policy), "latent", controller.next_request, deliver, report)
    worker.start()
    try:
        frame = np.full((120, 160, 3), 90, np.uint8)
        controller.on_camera(0, CameraFrame(now[0], "scene", frame), now[0])
        worker.wake()
        assert failed.wait(60.0), "the model error was not reported"
        controller.on_camera(0, CameraFrame(now[0] + 0.01, "scene", frame), now[0])
        worker.wake()
        assert delivered.wait(120.0), "no chunk from the worker"
    finally:
        worker.stop()
    assert isinstance(errors[0], RuntimeError)
    now[0] += 0.1
    result = controller.tick(now[0])
    assert result.state is PolicyState.RUNNING and result.command is not None
    assert result.new_chunks[0].result.prediction.actions.shape == (16, 7)


def test_run_once_reports_latency_and_the_newest_frame_stamp(tiny_policy):
    worker = InferenceWorker(tiny_policy, "latent", lambda: None, lambda r: None, lambda e: None)
    frames = tuple(CameraFrame(t, "scene", np.zeros((64, 64, 3), np.uint8)) for t in (5.0, 5.02))
    result = worker.run_once(InferenceRequest(frames, "pick.", None, 0))
    assert result.latency_s > 0 and result.prediction.actions.shape == (16, 7)
    assert result.request.stamp == 5.02


def test_torch_threads_leave_a_core_for_the_control_timer():
    assert set_torch_threads(1) == 1 and torch.get_num_threads() == 1
    assert set_torch_threads(0) == max(1, len(os.sched_getaffinity(0)) - 1)
    set_torch_threads(1)
