"""Parameter validation: every bad value is an error naming its parameter."""

from __future__ import annotations

from pathlib import Path

import pytest

from internvla_grounding.parsing import CoordinateConvention
from internvla_grounding.prompts import DEFAULT_TEMPLATES, GroundingKind
from internvla_grounding.settings import PARAMETERS, SettingsError, settings_from_values


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "steps_0_pytorch_model.pt"
    path.write_bytes(b"")
    return path


def test_defaults_with_a_checkpoint(checkpoint):
    s = settings_from_values({"checkpoint": str(checkpoint)})
    assert s.checkpoint == checkpoint
    assert s.base_vlm is None
    assert (s.device, s.dtype, s.share_model, s.kind) == ("cpu", "float32", True, GroundingKind.BOX)
    assert s.templates == DEFAULT_TEMPLATES
    assert s.coordinates is CoordinateConvention.PIXELS
    assert s.rate_hz == 1.0
    assert s.max_image_pixels == 4096 * 4096


def test_every_parameter_has_a_description():
    assert all(len(spec.description) > 15 for spec in PARAMETERS)
    assert len({spec.name for spec in PARAMETERS}) == len(PARAMETERS)


def test_an_integer_is_accepted_for_a_float(checkpoint):
    assert settings_from_values({"checkpoint": str(checkpoint), "rate_hz": 2}).rate_hz == 2.0


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("checkpoint", "", "not set"),
        ("checkpoint", "/nonexistent/steps_1_pytorch_model.pt", "does not exist"),
        ("base_vlm", "/nonexistent/qwen", "is not a folder"),
        ("device", "gpu0", "not a torch device"),
        ("dtype", "float64", "not one of float32, bfloat16, float16"),
        ("kind", "polygon", "not one of box, point, trace"),
        ("coordinates", "normalized", "not one of pixels, normalized_1000"),
        ("rate_hz", -1.0, "must be >= 0.0"),
        ("rate_hz", "fast", "expected a float"),
        ("share_model", 1, "expected a bool"),
        ("max_image_pixels", 0, "must be >= 1"),
        ("max_instruction_length", True, "expected a int"),
        ("image_transport", "theora", "not one of raw, compressed"),
        ("templates.box", "Locate the objects.", "exactly one {instruction}"),
    ],
)
def test_bad_values_name_the_parameter(checkpoint, name, value, problem):
    values = {"checkpoint": str(checkpoint), name: value}
    with pytest.raises(SettingsError, match=problem) as error:
        settings_from_values(values)
    assert error.value.parameter == name
    assert str(error.value).startswith(f"parameter '{name}': ")
