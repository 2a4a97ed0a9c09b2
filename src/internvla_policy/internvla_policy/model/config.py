"""The part of a run's training config (config.yaml) that decides the network and its inference.

Upstream reads the whole OmegaConf tree wherever it needs a value; here it is read once, checked,
and turned into a small frozen object, so a bad or foreign config fails at load time with the key
named instead of deep inside a forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError

FRAMEWORK_NAME = "InternVLA-M1"
QFORMER_HEADS = 8  # hard-coded upstream (get_layerwise_qformer)
DINO_SHORT_SIDE = 224  # upstream's torchvision Resize(224) before DINO
DINO_PATCH_SIZE = 14  # DINOv2 patch size: DINO's input sides must be multiples of it


@dataclass(frozen=True)
class TransformerSize:
    """Width, depth and head count of a named transformer variant."""

    width: int
    depth: int
    heads: int


# Upstream's action head names (CogACT's DiT variants) and the torch.hub DINOv2 names.
DIT_SIZES = {
    "DiT-S": TransformerSize(width=384, depth=6, heads=4),
    "DiT-B": TransformerSize(width=768, depth=12, heads=12),
    "DiT-L": TransformerSize(width=1024, depth=28, heads=16),
}
DINO_SIZES = {
    "dinov2_vits14": TransformerSize(width=384, depth=12, heads=6),
    "dinov2_vitb14": TransformerSize(width=768, depth=12, heads=12),
    "dinov2_vitl14": TransformerSize(width=1024, depth=24, heads=16),
}


@dataclass(frozen=True)
class M1Config:
    """What the released config.yaml says about the network and its inference preprocessing."""

    base_vlm: str
    dino_backbone: str
    dino_depth: int
    qformer_start_layer: int
    qformer_end_layer: int
    num_query_tokens: int
    qformer_input_dim: int
    qformer_output_dim: int
    action_model_type: str
    action_dim: int
    future_action_window_size: int
    image_size: tuple[int, int] | None
    """(width, height) in PIL's order; None means images reach the processors at their own size."""
    cot_prompt: str | None
    """Prompt template with an ``{instruction}`` placeholder; None means the raw instruction."""
    diffusion_steps: int = 100
    dino_short_side: int = DINO_SHORT_SIDE
    """Pixels DINO's input is resized to on its shorter side (upstream: 224)."""
    dit_override: TransformerSize | None = None
    dino_override: TransformerSize | None = None
    """Sizes given in the config itself instead of by variant name: small models trained from scratch."""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def horizon(self) -> int:
        """Actions per predicted chunk."""
        return self.future_action_window_size + 1

    @property
    def dit_size(self) -> TransformerSize:
        return self.dit_override or DIT_SIZES[self.action_model_type]

    @property
    def dino_size(self) -> TransformerSize:
        return self.dino_override or DINO_SIZES[self.dino_backbone]

    @property
    def num_qformer_layers(self) -> int:
        return self.qformer_end_layer - self.qformer_start_layer

    @classmethod
    def from_yaml(cls, path: Path) -> M1Config:
        """Read a run's config.yaml (interpolations resolved, as upstream's loader does)."""
        # Imported here: models built in memory (the benchmark on a GPU machine) run without OmegaConf.
        from omegaconf import OmegaConf

        try:
            tree = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        except Exception as err:  # OmegaConf raises several unrelated types for unreadable YAML
            raise CheckpointError(f"{path}: not a readable training config ({err})") from err
        if not isinstance(tree, dict):
            raise CheckpointError(f"{path}: expected a mapping at the top level")
        return cls.from_mapping(tree, source=str(path))

    @classmethod
    def from_mapping(cls, tree: Mapping[str, Any], source: str = "config") -> M1Config:
        """Build from the nested mapping of a config.yaml; ``source`` names it in error messages."""
        reader = _Reader(tree, source)
        framework = reader.optional("framework.framework_py", FRAMEWORK_NAME)
        if framework != FRAMEWORK_NAME:
            raise CheckpointError(
                f"{source}: framework.framework_py is {framework!r}; "
                f"this loader only builds {FRAMEWORK_NAME!r}"
            )
        image_size = reader.optional("datasets.vla_data.image_size", None)
        backbone = str(reader.optional("framework.dino.dino_backbone", "dinov2_vits14"))
        # framework.dino.depth keeps only the first blocks (test fixtures); real configs leave it out.
        full_depth = DINO_SIZES[backbone].depth if backbone in DINO_SIZES else 0
        config = cls(
            base_vlm=str(reader.required("framework.qwenvl.base_vlm")),
            dino_backbone=backbone,
            dino_depth=int(reader.optional("framework.dino.depth", full_depth)),
            qformer_start_layer=int(reader.required("framework.layer_qformer.qformer_start_layer")),
            qformer_end_layer=int(reader.required("framework.layer_qformer.qformer_end_layer")),
            num_query_tokens=int(reader.required("framework.layer_qformer.num_query_tokens")),
            qformer_input_dim=int(reader.required("framework.layer_qformer.input_dim")),
            # Upstream's key is misspelt "ouptput_dim"; accept the correct spelling too.
            qformer_output_dim=int(
                reader.optional("framework.layer_qformer.ouptput_dim", None)
                or reader.required("framework.layer_qformer.output_dim")
            ),
            action_model_type=str(reader.required("framework.action_model.action_model_type")),
            action_dim=int(reader.required("framework.action_model.action_dim")),
            future_action_window_size=int(
                reader.required("framework.action_model.future_action_window_size")
            ),
            image_size=(int(image_size[0]), int(image_size[1])) if image_size else None,
            cot_prompt=reader.optional("datasets.vla_data.CoT_prompt", None),
            dino_short_side=int(reader.optional("framework.dino.short_side", DINO_SHORT_SIDE)),
            dit_override=_size_override(reader, "framework.action_model", "action_hidden_dim", DIT_SIZES),
            dino_override=_size_override(reader, "framework.dino", "embed_dim", DINO_SIZES),
            raw=tree,
        )
        _validate(config, reader)
        return config


def _size_override(
    reader: _Reader, section: str, width_key: str, named: Mapping[str, TransformerSize]
) -> TransformerSize | None:
    """A size from ``<section>.num_blocks``/``num_heads`` (and the width key), when the config gives them.

    Released configs name their variant (DiT-B, dinov2_vits14) and have neither key; small models
    trained from scratch keep the architecture and module names but choose their own dimensions.
    """
    depth = reader.optional(f"{section}.num_blocks", None)
    heads = reader.optional(f"{section}.num_heads", None)
    if depth is None and heads is None:
        return None
    variant_key = "action_model_type" if section.endswith("action_model") else "dino_backbone"
    base = named.get(str(reader.optional(f"{section}.{variant_key}", "")))
    if base is None:
        raise CheckpointError(f"{reader.source}: {section}.num_blocks/num_heads need a known {variant_key}")
    width = int(reader.optional(f"{section}.{width_key}", base.width))
    size = TransformerSize(width, int(depth or base.depth), int(heads or base.heads))
    if min(size.width, size.depth, size.heads) < 1 or size.width % size.heads:
        raise CheckpointError(
            f"{reader.source}: {section}: width {size.width} is not divisible by {size.heads} heads"
        )
    return size


def _validate(config: M1Config, reader: _Reader) -> None:
    source = reader.source
    if config.dino_short_side < DINO_PATCH_SIZE or config.dino_short_side % DINO_PATCH_SIZE:
        raise CheckpointError(
            f"{source}: framework.dino.short_side must be a positive multiple of {DINO_PATCH_SIZE}, "
            f"got {config.dino_short_side}"
        )
    if config.action_model_type not in DIT_SIZES:
        raise CheckpointError(
            f"{source}: framework.action_model.action_model_type {config.action_model_type!r} is not one of "
            f"{sorted(DIT_SIZES)}"
        )
    if config.dino_backbone not in DINO_SIZES:
        raise CheckpointError(
            f"{source}: framework.dino.dino_backbone {config.dino_backbone!r} "
            f"is not one of {sorted(DINO_SIZES)}"
        )
    if not 1 <= config.dino_depth <= config.dino_size.depth:
        raise CheckpointError(
            f"{source}: framework.dino.depth must be within 1..{config.dino_size.depth}, "
            f"got {config.dino_depth}"
        )
    width = config.dit_size.width
    hidden = reader.optional("framework.action_model.action_hidden_dim", width)
    if int(hidden) != width or config.qformer_output_dim != width:
        raise CheckpointError(
            f"{source}: {config.action_model_type} is {width} wide, but action_hidden_dim is {hidden} and "
            f"layer_qformer output dim is {config.qformer_output_dim}"
        )
    if config.num_qformer_layers < 1:
        raise CheckpointError(
            f"{source}: layer_qformer selects no hidden states "
            f"([{config.qformer_start_layer}:{config.qformer_end_layer}])"
        )
    past = int(reader.optional("framework.action_model.past_action_window_size", 0))
    if past:
        raise CheckpointError(
            f"{source}: past_action_window_size={past} is not supported: "
            "upstream inference never feeds past actions"
        )
    if config.cot_prompt is not None and not isinstance(config.cot_prompt, str):
        raise CheckpointError(f"{source}: datasets.vla_data.CoT_prompt must be a string")


_MISSING = object()


class _Reader:
    """Dotted-path access into a nested mapping, naming the source and key when something is absent."""

    def __init__(self, tree: Mapping[str, Any], source: str) -> None:
        self.tree = tree
        self.source = source

    def _lookup(self, dotted: str) -> Any:
        node: Any = self.tree
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return _MISSING
            node = node[part]
        return node

    def required(self, dotted: str) -> Any:
        value = self._lookup(dotted)
        if value is _MISSING or value is None:
            raise CheckpointError(f"{self.source}: missing key {dotted}")
        return value

    def optional(self, dotted: str, default: Any) -> Any:
        value = self._lookup(dotted)
        return default if value is _MISSING or value is None else value
