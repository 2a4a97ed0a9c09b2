"""The Qwen2.5-VL backbone and a stand-in for its processor, built from the base VLM folder.

transformers 5.x's ``AutoProcessor`` needs torchvision (for video) and is not used: the tokenizer,
the PIL image processor and the chat template are driven directly, reproducing what upstream's
processor plus qwen-vl-utils produced. One input the 5.x processor would have made is built here
too: ``mm_token_type_ids``. Without it Qwen silently computes wrong rotary positions for the image
tokens.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedTokenizerBase,
)
from transformers.models.qwen2_5_vl import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil, smart_resize

from .errors import CheckpointError
from .preprocessing import resize_to

IMAGE_TOKEN = "<|image_pad|>"
QWEN_MODEL_TYPE = "qwen2_5_vl"
BASE_VLM_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json")

QwenInputs = dict[str, torch.Tensor]


def check_base_vlm_dir(base_dir: Path) -> None:
    """Fail early, naming the file, when a base VLM folder lacks what the loader reads from it."""
    if not base_dir.is_dir():
        raise FileNotFoundError(
            f"base VLM folder not found: {base_dir} (pass base_vlm= / --base-vlm to point at it)"
        )
    for name in BASE_VLM_FILES:
        if not (base_dir / name).is_file():
            raise FileNotFoundError(f"base VLM folder {base_dir} has no {name}")


def load_qwen_config(base_dir: Path) -> Qwen2_5_VLConfig:
    """The Qwen config of the base VLM folder (configs saved by transformers 4.x load with warnings)."""
    config = AutoConfig.from_pretrained(base_dir)
    if config.model_type != QWEN_MODEL_TYPE:
        raise CheckpointError(
            f"{base_dir / 'config.json'}: model_type is {config.model_type!r}, "
            f"InternVLA-M1 needs {QWEN_MODEL_TYPE!r}"
        )
    return config


class QwenVLInterface(nn.Module):
    """Upstream's ``qwen_vl_interface``: the HF model sits under ``model`` in the state dict."""

    def __init__(self, config: Qwen2_5_VLConfig, dtype: torch.dtype) -> None:
        super().__init__()
        self.model: Qwen2_5_VLForConditionalGeneration = AutoModelForImageTextToText.from_config(
            config, attn_implementation="sdpa", dtype=dtype
        )

    def hidden_states(self, inputs: QwenInputs) -> tuple[torch.Tensor, ...]:
        """All LM hidden states: index 0 the input embeddings, the last one after the final norm.

        Runs the base model without the LM head: upstream computes vocabulary logits here and never
        reads them. A left-padded batch gets upstream's additive mask (see ``padded_causal_bias``),
        with the multimodal positions computed from the 2-D mask beforehand.
        """
        backbone = self.model.model
        mask = inputs["attention_mask"]
        if bool((mask == 0).any()):
            positions, _ = backbone.get_rope_index(
                inputs["input_ids"],
                inputs["mm_token_type_ids"],
                inputs["image_grid_thw"],
                attention_mask=mask,
            )
            inputs = {
                **inputs,
                "position_ids": positions,
                "attention_mask": padded_causal_bias(mask, self.model.dtype),
            }
        return backbone(**inputs, output_hidden_states=True, use_cache=False).hidden_states


def padded_causal_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive causal + padding bias [B, 1, T, T] as transformers 4.52 built it for sdpa and eager.

    A pad position's query row is fully masked; with a finite "minus infinity" it attends uniformly
    to all positions, and upstream feeds those hidden states to the Q-Former unmasked. transformers
    5.x passes a boolean mask instead, which gives such rows different values, so the bias is built
    here. (Upstream on GPU used flash-attention, which zeroes those rows; the reference outputs and
    this port follow the CPU semantics on every device.)
    """
    length = mask.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    allowed = causal[None, None] & mask[:, None, None, :].bool()
    return torch.zeros(allowed.shape, dtype=dtype, device=mask.device).masked_fill(
        ~allowed, torch.finfo(dtype).min
    )


class QwenProcessor:
    """Tokenizer, PIL image processor and chat template of a Qwen2.5-VL folder, used without AutoProcessor."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: Qwen2VLImageProcessorPil,
        generation: GenerationConfig,
    ) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.generation = generation
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    @classmethod
    def from_dir(cls, base_dir: Path) -> QwenProcessor:
        check_base_vlm_dir(base_dir)
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        tokenizer.padding_side = "left"  # upstream sets it; the policy batches prompts of different lengths
        if not tokenizer.chat_template:
            raise CheckpointError(f"base VLM folder {base_dir} has no chat template (chat_template.jinja)")
        generation = (
            GenerationConfig.from_pretrained(base_dir)
            if (base_dir / "generation_config.json").is_file()
            else GenerationConfig()
        )
        return cls(tokenizer, Qwen2VLImageProcessorPil.from_pretrained(base_dir), generation)

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) qwen-vl-utils' ``smart_resize`` gives a source image: multiples of 28 near the
        original, within the processor's pixel budget. Qwen's pixel answers refer to this size."""
        return fitted_size(width, height, **self.resize_settings())

    def resize_settings(self) -> dict[str, int]:
        """What ``target_size`` depends on: the inference server sends it to remote clients, which need
        view sizes (spatial prompts in text) without loading the processor."""
        processor = self.image_processor
        return {
            "factor": processor.patch_size * processor.merge_size,
            "min_pixels": processor.size["shortest_edge"],
            "max_pixels": processor.size["longest_edge"],
        }

    def fit(self, image: Image.Image) -> Image.Image:
        """qwen-vl-utils' ``fetch_image`` resize (bicubic, skipped when the size is already right)."""
        return resize_to(image, self.target_size(*image.size))

    def render_prompt(self, num_images: int, text: str) -> str:
        """One user turn holding the images then the text, with the generation prompt appended."""
        content = [{"type": "image"} for _ in range(num_images)] + [{"type": "text", "text": text}]
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )

    def encode(
        self,
        images: Sequence[Sequence[Image.Image]],
        texts: Sequence[str],
        suffixes: Sequence[str] | None = None,
    ) -> QwenInputs:
        """Model inputs for a batch: per sample, its images (already ``fit``) and its user text.

        ``suffixes`` (one per sample) are appended after the generation prompt: the assistant's answers
        when the language-model head is trained.
        """
        flat = [image for sample in images for image in sample]
        vision = self.image_processor(images=flat, return_tensors="pt")
        merge = self.image_processor.merge_size**2
        counts = iter((vision["image_grid_thw"].prod(-1) // merge).tolist())
        prompts = [
            _expand_image_tokens(self.render_prompt(len(sample), text), [next(counts) for _ in sample])
            for sample, text in zip(images, texts, strict=True)
        ]
        if suffixes is not None:
            prompts = [prompt + suffix for prompt, suffix in zip(prompts, suffixes, strict=True)]
        tokens = self.tokenizer(prompts, padding=True, return_tensors="pt")
        return {
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
            "pixel_values": vision["pixel_values"],
            "image_grid_thw": vision["image_grid_thw"],
            "mm_token_type_ids": (tokens["input_ids"] == self.image_token_id).to(torch.int32),
        }

    def generation_config(self, max_new_tokens: int, repetition_penalty: float | None) -> GenerationConfig:
        """The base VLM's generation settings made greedy.

        Qwen's released instruct config samples with top_k=1, which is greedy decoding with its
        repetition penalty; the penalty is kept unless the caller overrides it.
        """
        config = copy.deepcopy(self.generation)
        config.do_sample = False
        config.temperature = config.top_k = config.top_p = None
        config.max_new_tokens = max_new_tokens
        if repetition_penalty is not None:
            config.repetition_penalty = repetition_penalty
        return config

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def fitted_size(width: int, height: int, *, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) after ``smart_resize`` with these settings (see ``QwenProcessor.target_size``)."""
    new_height, new_width = smart_resize(
        height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels
    )
    return new_width, new_height


def _expand_image_tokens(prompt: str, counts: Sequence[int]) -> str:
    """Repeat each image placeholder once per visual token of its image (what the HF processor does)."""
    parts = prompt.split(IMAGE_TOKEN)
    if len(parts) - 1 != len(counts):
        raise ValueError(f"the prompt text must not contain {IMAGE_TOKEN}: it stands for image features")
    return parts[0] + "".join(
        IMAGE_TOKEN * count + part for count, part in zip(counts, parts[1:], strict=True)
    )
