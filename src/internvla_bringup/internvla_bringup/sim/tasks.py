"""The seeded tabletop task family: instructions, random layouts and success judging.

A seed fixes both the task (when none is given) and the object layout, so an episode can be
replayed exactly by (robot, seed, instruction). Judging uses only simulator ground truth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from internvla_bringup.sim.robots import Workspace
from internvla_bringup.sim.scene import (
    BLOCK_COLOURS,
    BOWL,
    BOWL_HEIGHT,
    OBJECT_NAMES,
    block_name,
    object_label,
)

TASK_KINDS = ("pick", "place_in_bowl", "stack")
DEFAULT_KINDS = ("pick", "place_in_bowl")
PICK_LIFT = 0.05  # metres the block's bottom must rise above the table to count as picked up

_COLOURS = "|".join(BLOCK_COLOURS)
_PATTERNS = (
    ("pick", re.compile(rf"^(?:pick up|pick|lift|grab|grasp) (?:the )?({_COLOURS}) (?:block|cube)$")),
    (
        "place_in_bowl",
        re.compile(
            rf"^(?:put|place|move|drop) (?:the )?({_COLOURS}) (?:block|cube) "
            r"(?:in|into|inside) (?:the )?bowl$"
        ),
    ),
    (
        "stack",
        re.compile(
            rf"^(?:put|place|stack|move) (?:the )?({_COLOURS}) (?:block|cube) (?:on|onto|on top of) "
            rf"(?:the )?({_COLOURS}) (?:block|cube)$"
        ),
    ),
)


@dataclass(frozen=True)
class Task:
    """One task: move ``obj`` (a block body name) according to ``kind``, relative to ``target``."""

    kind: str
    obj: str
    target: str | None = None

    @property
    def instruction(self) -> str:
        """The canonical English instruction, as a user would type it."""
        if self.kind == "pick":
            return f"pick up the {object_label(self.obj)}"
        preposition = "in" if self.target == BOWL else "on"
        return f"put the {object_label(self.obj)} {preposition} the {object_label(self.target)}"

    @property
    def named_objects(self) -> tuple[str, ...]:
        """Objects the instruction refers to, in mention order (the grounding targets)."""
        return (self.obj,) if self.target is None else (self.obj, self.target)


def parse_instruction(text: str) -> Task | None:
    """The task an instruction names, or None when it is not in the family (case and punctuation free)."""
    normal = re.sub(r"[^a-z ]", " ", text.lower())
    normal = re.sub(r"\s+", " ", normal).strip()
    for kind, pattern in _PATTERNS:
        match = pattern.match(normal)
        if match is None:
            continue
        obj = block_name(match.group(1))
        if kind == "pick":
            return Task(kind, obj)
        if kind == "place_in_bowl":
            return Task(kind, obj, BOWL)
        target = block_name(match.group(2))
        return Task(kind, obj, target) if target != obj else None
    return None


def sample_task(rng: np.random.Generator, kinds: tuple[str, ...] = DEFAULT_KINDS) -> Task:
    """A uniformly drawn task of the given kinds."""
    unknown = set(kinds) - set(TASK_KINDS)
    if not kinds or unknown:
        raise ValueError(f"task kinds must be a non-empty subset of {TASK_KINDS}, got {kinds}")
    kind = str(rng.choice(list(kinds)))
    colours = list(BLOCK_COLOURS)
    obj = block_name(str(rng.choice(colours)))
    if kind == "pick":
        return Task(kind, obj)
    if kind == "place_in_bowl":
        return Task(kind, obj, BOWL)
    others = [block_name(c) for c in colours if block_name(c) != obj]
    return Task(kind, obj, str(rng.choice(others)))


def sample_layout(
    rng: np.random.Generator, workspace: Workspace, attempts: int = 2000
) -> dict[str, np.ndarray]:
    """Random (x, y, yaw) per object, far enough apart for the gripper to reach between them."""
    block = workspace.block_size
    bowl_clearance = workspace.bowl_radius + BOWL_HEIGHT * 0.4 + block
    min_block_gap = 2.25 * block
    for _ in range(attempts):
        layout: dict[str, np.ndarray] = {}
        for name in (BOWL, *[n for n in OBJECT_NAMES if n != BOWL]):
            xy = rng.uniform(
                [workspace.x_range[0], workspace.y_range[0]], [workspace.x_range[1], workspace.y_range[1]]
            )
            clear = all(
                np.linalg.norm(xy - other[:2])
                >= (bowl_clearance if BOWL in (name, other_name) else min_block_gap)
                for other_name, other in layout.items()
            )
            if not clear:
                break
            layout[name] = np.array([xy[0], xy[1], rng.uniform(-np.pi / 4, np.pi / 4)])
        if len(layout) == len(OBJECT_NAMES):
            return layout
    raise RuntimeError(f"no collision-free layout in {attempts} attempts for workspace {workspace}")


@dataclass(frozen=True)
class ObjectState:
    """Ground truth about one object at judging time."""

    position: np.ndarray
    touching_gripper: bool


def judge(task: Task, objects: dict[str, ObjectState], workspace: Workspace) -> bool:
    """Whether ``task`` is achieved in the current state.

    Pick: the block is held (touching the gripper) with its bottom PICK_LIFT above the table.
    Placing: the block rests inside the bowl, or centred on the target block, and is released.
    """
    block = workspace.block_size
    state = objects[task.obj]
    height = state.position[2] - block / 2 - workspace.table_z
    if task.kind == "pick":
        return bool(state.touching_gripper and height >= PICK_LIFT)
    if state.touching_gripper:
        return False
    target = objects[task.target].position
    offset = state.position[:2] - target[:2]
    if task.kind == "place_in_bowl":
        inside = np.linalg.norm(offset) < workspace.bowl_radius - 0.25 * block
        return bool(inside and height < BOWL_HEIGHT)
    on_top = state.position[2] - target[2]
    return bool(np.linalg.norm(offset) < 0.5 * block and abs(on_top - block) < 0.01)
