"""Mixed precision for the fast path: matrix-product weights in bfloat16, everything else in float32.

Upstream runs float32 weights under ``torch.autocast(bfloat16)``: every matrix product takes bfloat16
operands (its weights are converted on every call), while embeddings, residual streams, norm scales,
LayerScale factors, position tables and learned queries stay float32. Storing exactly the
matrix-product weights in bfloat16 and running under the same autocast gives that arithmetic without
the per-call conversion, which moves 8 bytes per parameter instead of 2: on the CPU the result is
bitwise the reference's. Embedding tables stay float32 (a lookup reads only a few rows); a language
model head tied to one gets its own bfloat16 weight, since it is a matrix product. Pure bfloat16
(activations too) is the alternative: fewer kernels, about twice as far from the reference.
"""

from __future__ import annotations

import torch
from torch import nn

MATRIX_PRODUCT_MODULES = (nn.Linear, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)


def float32_outside_matrix_products(model: nn.Module, source: nn.Module) -> int:
    """Give ``model`` float32 copies, taken from ``source`` (same architecture, left as it is), of every
    parameter that no matrix-product module owns; returns how many."""
    _untie_linear_weights_from_embeddings(model)
    count = 0
    for owner_name, owner in model.named_modules():
        if isinstance(owner, MATRIX_PRODUCT_MODULES):
            continue
        for name, param in owner.named_parameters(recurse=False):
            original = source.get_parameter(f"{owner_name}.{name}" if owner_name else name)
            param.data = original.detach().to(torch.float32, copy=True)
            count += 1
    return count


def _untie_linear_weights_from_embeddings(model: nn.Module) -> None:
    """A linear layer sharing its weight with an embedding keeps the current (bfloat16) tensor under
    a parameter of its own, so that upcasting the embedding leaves it alone."""
    embeddings = {id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)}
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module.weight) in embeddings:
            module.weight = nn.Parameter(module.weight.detach(), requires_grad=False)
