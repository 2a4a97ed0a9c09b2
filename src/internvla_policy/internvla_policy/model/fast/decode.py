"""Greedy text generation for one sequence over a fixed-size KV cache, for grounding answers.

transformers' ``generate`` grows its cache and runs each new token through Python and dozens of
separate kernel launches per layer; for a 3B model on a GPU that overhead, not the arithmetic, sets
the speed. Here the cache has a fixed capacity, the next token, its position and the repetition
penalty's memory live in device buffers, and one decoding step reads and writes only those
buffers. Several steps are captured together as one CUDA graph, shared by every prompt; a prompt's
prefill is its own stage. The token choice is ``generate``'s greedy one: logits in float32, the
repetition penalty on every token of the prompt and the answer so far, then the argmax.
"""

from __future__ import annotations

import torch
from torch import nn

DECODE_CHUNK = 8  # decoding steps per graph replay; the host checks for end-of-sequence between replays


class StaticKVCache:
    """Keys and values of every layer in buffers of ``capacity`` positions. transformers' attention
    calls ``update`` with the new keys and values; they are written at ``positions`` (a device tensor
    the caller points at the positions being computed) and the whole buffer is returned."""

    def __init__(self, text_config: object, capacity: int, device: torch.device, dtype: torch.dtype) -> None:
        heads = text_config.num_key_value_heads
        head_dim = (
            getattr(text_config, "head_dim", None)
            or text_config.hidden_size // text_config.num_attention_heads
        )
        shape = (1, heads, capacity, head_dim)
        layers = text_config.num_hidden_layers
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.positions = torch.zeros(1, dtype=torch.long, device=device)

    def update(
        self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Under mixed precision keys arrive in float32 (rotated in float32) and values in bfloat16: a
        # float32 cache holds both exactly, as transformers' own cache does under autocast.
        self.keys[layer_idx].index_copy_(2, self.positions, key.to(self.keys[layer_idx].dtype))
        self.values[layer_idx].index_copy_(2, self.positions, value.to(self.values[layer_idx].dtype))
        return self.keys[layer_idx], self.values[layer_idx]


class GreedyDecoder:
    """The decoding state of one sequence and the steps that advance it, for ``Qwen2_5_VL...Generation``.

    ``activation_dtype`` is the dtype token embeddings enter the decoder layers in and the cache holds
    (float32 under mixed precision). The caller wraps :meth:`decode_chunk` in a stage; capture it
    before the first prefill, since capturing runs the steps a few times.
    """

    def __init__(self, model: nn.Module, capacity: int, activation_dtype: torch.dtype) -> None:
        device = model.lm_head.weight.device
        text_config = model.config.get_text_config()
        self.text = model.model.language_model
        self.lm_head = model.lm_head
        self.capacity = capacity
        self.cache = StaticKVCache(text_config, capacity, device, activation_dtype)
        self.mask_kinds = set(text_config.layer_types)
        self.key_positions = torch.arange(capacity, device=device)
        self.token = torch.zeros(1, 1, dtype=torch.long, device=device)
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        """Cache position of ``token``, the next token to feed."""
        self.rope_delta = torch.zeros(1, dtype=torch.long, device=device)
        self.penalty = torch.ones(1, dtype=torch.float32, device=device)
        self.seen = torch.zeros(model.lm_head.weight.shape[0], dtype=torch.bool, device=device)
        self.generated = torch.zeros(capacity, dtype=torch.long, device=device)
        self.count = torch.zeros(1, dtype=torch.long, device=device)
        self.activation_dtype = activation_dtype

    def prefill(
        self,
        embeds: torch.Tensor,
        position_ids: torch.Tensor,
        rope_delta: torch.Tensor,
        prompt_ids: torch.Tensor,
        cache_positions: torch.Tensor,
    ) -> None:
        """Run the prompt ([1, T, D] embeddings, (3, 1, T) positions) into the cache and choose the first
        token. Every argument is a static buffer of the calling prompt's stage."""
        self.cache.positions = cache_positions
        hidden = self.text(
            inputs_embeds=embeds,
            position_ids=position_ids,
            attention_mask=dict.fromkeys(self.mask_kinds),  # causal over the prompt: SDPA's own mask
            past_key_values=self.cache,
            use_cache=True,
        ).last_hidden_state
        self.seen.zero_()
        self.seen.index_fill_(0, prompt_ids, True)
        self.count.zero_()
        self._emit(hidden[:, -1])
        self.position.fill_(embeds.shape[1])
        self.rope_delta.copy_(rope_delta)

    def decode_chunk(self) -> None:
        """``DECODE_CHUNK`` greedy steps from the current state."""
        for _ in range(DECODE_CHUNK):
            self._decode_step()

    def _decode_step(self) -> None:
        self.cache.positions = self.position
        mask = (self.key_positions <= self.position).view(1, 1, 1, -1)
        positions = (self.position + self.rope_delta).view(1, 1, 1).expand(3, 1, 1)
        hidden = self.text(
            inputs_embeds=self.text.embed_tokens(self.token).to(self.activation_dtype),
            position_ids=positions,
            attention_mask=dict.fromkeys(self.mask_kinds, mask),
            past_key_values=self.cache,
            use_cache=True,
        ).last_hidden_state
        self._emit(hidden[:, -1])
        self.position.add_(1)

    def _emit(self, last_hidden: torch.Tensor) -> None:
        """Choose the next token from the last position's hidden state and record it."""
        logits = self.lm_head(last_hidden).float()[0]
        penalised = torch.where(logits < 0, logits * self.penalty, logits / self.penalty)
        token = torch.where(self.seen, penalised, logits).argmax().view(1)
        self.generated.index_copy_(0, self.count, token)
        self.count.add_(1)
        self.seen.index_fill_(0, token, True)
        self.token.copy_(token.view(1, 1))
