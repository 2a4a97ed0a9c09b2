"""Drop counting and per-input warning throttling."""

from __future__ import annotations

from internvla_grounding.drops import DropCounter


class FakeClock:
    """A settable monotonic clock (time itself, not ROS or the model, is what is faked here)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_drop_warns_then_throttles_per_input():
    clock = FakeClock()
    drops = DropCounter(throttle_s=5.0, clock=clock)
    assert (
        drops.drop("image", "step mismatch")
        == "dropped image: step mismatch (1 image input(s) dropped so far)"
    )
    assert drops.drop("image", "zero-size image (0x0)") is None
    # Another input is not hidden by the image flood.
    assert drops.drop("instruction", "empty instruction") is not None
    clock.now += 4.9
    assert drops.drop("image", "again") is None
    clock.now += 0.2
    assert drops.drop("image", "again") == "dropped image: again (4 image input(s) dropped so far)"
    assert drops.counts() == {"image": 4, "instruction": 1}
