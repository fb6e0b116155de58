"""Aesthetic-score heads over L2-normalised CLIP image embeddings, loaded from a safetensors file.

Two layouts, told apart by the state dict's keys and shapes:
- `linear`: one `Linear(D, 1)` (keys `weight` (1, D) and `bias` (1,)), e.g. LAION-5B's aesthetic
  predictor (LAION-AI/aesthetic-predictor, `sa_0_4_vit_l_14_linear.pth` over ViT-L/14, D = 768).
- `laion-mlp`: christophschuhmann/improved-aesthetic-predictor's MLP, `layers` = Linear(D, 1024),
  Dropout, Linear(1024, 128), Dropout, Linear(128, 64), Dropout, Linear(64, 16), Linear(16, 1), with
  no activations between them (keys `layers.{0,2,4,6,7}.{weight,bias}`; published for ViT-L/14,
  e.g. `sac+logos+ava1-l14-linearMSE.pth`). Dropouts are the identity at inference.
Both predictors were trained on normalised embeddings, which is what `score_batch` gives them.

The published files are pickled `.pth` state dicts; convert once (weights only, no code runs):
    python -c "import sys, torch, safetensors.torch as st; st.save_file({k: v.contiguous() for k, v in
    torch.load(sys.argv[1], map_location='cpu', weights_only=True).items()}, sys.argv[2])" IN.pth OUT.safetensors
"""

from __future__ import annotations

from typing import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

LINEAR = "linear"
LAION_MLP = "laion-mlp"
# improved-aesthetic-predictor's `MLP.layers`: index in the Sequential -> (in, out); D is the embedding width
_LAION_MLP_LINEARS = {0: (None, 1024), 2: (1024, 128), 4: (128, 64), 6: (64, 16), 7: (16, 1)}


class HeadError(ValueError):
    """A head file whose layout is not one we know, or whose input width is not the CLIP model's."""


def _shapes(state: Mapping[str, torch.Tensor]) -> str:
    return ", ".join(f"{key} {tuple(value.shape)}" for key, value in sorted(state.items()))


class LaionMLP(torch.nn.Module):
    """improved-aesthetic-predictor's `MLP` at inference: the same `layers`, so its state dict loads as is."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(embed_dim, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
            torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16), torch.nn.Linear(16, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings)  # (B, D) -> (B, 1)


def head_layout(state: Mapping[str, torch.Tensor]) -> str:
    """`linear` or `laion-mlp` for a state dict of that layout; HeadError (listing the keys and
    shapes found) for anything else."""
    if set(state) == {"weight", "bias"} and state["weight"].ndim == 2 and state["weight"].shape[0] == 1 \
            and tuple(state["bias"].shape) == (1,):
        return LINEAR
    expected = {f"layers.{i}.{part}" for i in _LAION_MLP_LINEARS for part in ("weight", "bias")}
    if set(state) == expected:
        for index, (width_in, width_out) in _LAION_MLP_LINEARS.items():
            weight, bias = state[f"layers.{index}.weight"], state[f"layers.{index}.bias"]
            if weight.ndim != 2 or weight.shape[0] != width_out or (width_in and weight.shape[1] != width_in) \
                    or tuple(bias.shape) != (width_out,):
                raise HeadError(
                    f"layers.{index} has the keys of improved-aesthetic-predictor's MLP but not its shapes "
                    f"(Linear(?, 1024), (1024, 128), (128, 64), (64, 16), (16, 1)): {_shapes(state)}")
        return LAION_MLP
    raise HeadError(
        "not an aesthetic head we know: expected a Linear(D, 1) (keys weight, bias) or improved-aesthetic-"
        f"predictor's MLP (keys layers.{{0,2,4,6,7}}.weight/bias); found {_shapes(state)}"
    )


def build_head(state: Mapping[str, torch.Tensor], embed_dim: int) -> torch.nn.Module:
    """The head for `state`, in eval mode, float32: `(B, embed_dim)` normalised embeddings -> `(B, 1)`.
    HeadError for an unknown layout or an input width other than `embed_dim`."""
    layout = head_layout(state)
    first = state["weight"] if layout == LINEAR else state["layers.0.weight"]
    if first.shape[1] != embed_dim:
        raise HeadError(f"the {layout} aesthetic head reads {first.shape[1]}-wide embeddings but the CLIP model "
                        f"gives {embed_dim}-wide ones (LAION's heads are for ViT-L/14, 768)")
    head = torch.nn.Linear(embed_dim, 1) if layout == LINEAR else LaionMLP(embed_dim)
    head.load_state_dict({key: value.float() for key, value in state.items()}, strict=True)
    return head.eval()


def load_state(data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file's bytes (HeadError for a file that is not safetensors)."""
    try:
        return load_safetensors(data)
    except SafetensorError as err:
        raise HeadError(f"not a safetensors file: {err}") from err


def load_head(data: bytes, embed_dim: int) -> torch.nn.Module:
    """`build_head` of a safetensors file's bytes."""
    return build_head(load_state(data), embed_dim)
