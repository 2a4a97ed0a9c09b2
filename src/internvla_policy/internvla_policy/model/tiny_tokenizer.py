"""A small Qwen2-shaped tokenizer trained offline, for the tiny model (no hub downloads anywhere).

It has Qwen2's pipeline (NFC, Qwen2's split regex, byte-level BPE without a prefix space), a BPE
vocabulary trained here on a built-in corpus, then Qwen2.5's 22 added tokens in Qwen's order, and
the Qwen2.5-VL chat template. Prompts built with it have the structure the real model sees.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

BPE_VOCAB_SIZE = 320  # the 256 byte symbols plus 64 merges

# Qwen2.5's added tokens, in their id order; the first 14 are special (dropped when decoding).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
QWEN_PLAIN_ADDED_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)

QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Text shaped like what the model reads and writes: the chat frame, robot instructions, the CoT
# grounding prompt and Qwen's JSON grounding answers.
CORPUS = (
    "You are a helpful assistant.",
    "system user assistant",
    "Your task is pick up the red block and place it in the bowl.. "
    "To identify the key objects for your task. Locate their bounding boxes in [x1,y1,x2,y2] format.",
    "pick up the red block and place it in the bowl.",
    "open the top drawer of the cabinet.",
    "put the carrot on the plate.",
    "move the blue cup to the left of the sink, then close the microwave door.",
    "put the spoon on the towel and stack the green block on the yellow block.",
    "Give the bounding box for the apple.",
    "Point to the handle of the mug. Trace the path of the gripper to the bowl.",
    '[{"bbox_2d": [112, 64, 180, 150], "label": "red block"}, '
    '{"bbox_2d": [20, 30, 90, 120], "label": "bowl"}]',
    '{"point_2d": [132, 97], "label": "handle"}',
    "The robot arm moves the gripper above the object, closes it, lifts it and places it in the target.",
    "left right top bottom front back near far above below inside onto into",
    "0 1 2 3 4 5 6 7 8 9 10 20 30 40 50 60 70 80 90 100 128 224 256",
)


def train_bpe(vocab_size: int = BPE_VOCAB_SIZE, corpus: Sequence[str] = CORPUS) -> Tokenizer:
    """Byte-level BPE with Qwen2's normaliser and pre-tokeniser, trained on ``corpus`` (deterministic).

    A model trained from scratch on one task family passes a larger ``vocab_size`` and its own texts,
    so that its instructions and grounding answers take fewer tokens.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(list(corpus) * 4, trainer)
    return tokenizer


def build_tokenizer(
    vocab_size: int = BPE_VOCAB_SIZE, corpus: Sequence[str] = CORPUS, base_vocab_size: int | None = None
) -> Qwen2Tokenizer:
    """The tiny model's tokenizer: trained BPE, then the added tokens (ids 320..341 by default), Qwen's order.

    eos is ``<|im_end|>``, pad ``<|endoftext|>``, no bos or unk, left padding, as Qwen2.5-VL-Instruct.
    ``base_vocab_size`` pads the BPE vocabulary with entries no text produces, so that the added tokens
    get the ids of a larger tokenizer (151643 gives Qwen2.5's real ids, as the real-size benchmark needs).
    """
    spec = json.loads(train_bpe(vocab_size, corpus).to_str())["model"]
    vocab = dict(spec["vocab"])
    vocab.update({f"<|unused_{index}|>": index for index in range(len(vocab), base_vocab_size or 0)})
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(pair) for pair in spec["merges"]],
        unk_token=None,
        bos_token=None,
        eos_token=QWEN_SPECIAL_TOKENS[0],  # the constructor adds eos/pad first: keep <|endoftext|> first
        pad_token=QWEN_SPECIAL_TOKENS[0],
        model_max_length=131072,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:])})
    tokenizer.add_tokens(
        [AddedToken(token, special=False, normalized=False) for token in QWEN_PLAIN_ADDED_TOKENS]
    )
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.padding_side = "left"
    tokenizer.chat_template = QWEN25_VL_CHAT_TEMPLATE
    return tokenizer
