"""Prompt templates and grounding kinds."""

from __future__ import annotations

import pytest

from internvla_grounding.prompts import DEFAULT_TEMPLATES, GroundingKind, render, validate_template
from internvla_msgs.srv import Ground


def test_kind_codes_match_the_ground_service():
    assert GroundingKind.BOX.code == Ground.Request.KIND_BOX
    assert GroundingKind.POINT.code == Ground.Request.KIND_POINT
    assert GroundingKind.TRACE.code == Ground.Request.KIND_TRACE
    assert [GroundingKind.from_code(k.code) for k in GroundingKind] == list(GroundingKind)
    with pytest.raises(ValueError, match="unknown grounding kind code 7"):
        GroundingKind.from_code(7)


@pytest.mark.parametrize("kind", list(GroundingKind))
def test_default_templates_ask_for_the_format_the_parser_reads(kind):
    template = DEFAULT_TEMPLATES[kind]
    validate_template(template)
    prompt = render(template, "Pick up the red block.")
    assert "pick up the red block" in prompt.lower()
    assert "{instruction}" not in prompt
    assert {"box": '"bbox_2d"', "point": '"point_2d"', "trace": '"trace"'}[kind.value] in prompt


def test_render_drops_the_instructions_own_full_stop_and_keeps_json_braces():
    prompt = render('Task: {instruction}. Answer [{"point_2d": [x, y]}].', "  open the drawer.  ")
    assert prompt == 'Task: open the drawer. Answer [{"point_2d": [x, y]}].'


@pytest.mark.parametrize("template", ["no placeholder", "{instruction} and {instruction}", "{Instruction}"])
def test_templates_need_exactly_one_placeholder(template):
    with pytest.raises(ValueError, match="exactly one"):
        validate_template(template)
