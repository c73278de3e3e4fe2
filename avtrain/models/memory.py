"""The multi-modality associative bridge (Kim et al., ICCV 2021, Sec. 3): source-key and target-value memories.

Reusable by any model that has a source feature sequence and, at training time, a synchronised target sequence:
the lip-reading model here, a speech decoder, or several copies at different depths (MTLAM). Inputs are (B, T, C)
source and (B, T, D) target features with an optional (B, T) mask of real frames; the output carries the recalled
target features, both addressing vectors and the memory losses.

Two variants:

``paper``    Eq. 1-6 and Algorithm 1 read literally: cosine addressing of the raw features, gradients everywhere,
             L_save = mean over frames of ||f_tgt - A_tgt M_tgt||^2 (summed over D), L_bridge = mean over frames of
             KL(A_tgt || A_src) (Alg. 1 line 16 divides both sums by T).
``official`` the public code's behaviour: a Linear embeds each query before addressing; the target feature is
             detached inside the memory (the audio front learns only from its own task loss); L_save is an
             element-wise MSE; recall reads a detached value memory (the value memory learns only from L_save);
             L_bridge has A_tgt detached (only the key side learns to follow).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from avtrain.models.masked import masked_mean


@dataclass
class BridgeOutput:
    recalled: torch.Tensor  # v_tgt = A_src M_tgt, (B, T, D)
    src_address: torch.Tensor  # A_src, (B, T, N)
    tgt_address: torch.Tensor | None = None  # A_tgt, (B, T, N), only when a target was given
    reconstructed: torch.Tensor | None = None  # f̂_tgt = A_tgt M_tgt
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # "save", "bridge" (unweighted)


class AssociativeBridge(nn.Module):
    def __init__(
        self,
        num_slots: int,
        src_dim: int,
        tgt_dim: int,
        scale: float = 16.0,
        variant: str = "paper",
        init_std: float = 0.5,
    ):
        super().__init__()
        if num_slots <= 0:
            raise ValueError("AssociativeBridge needs num_slots > 0 (N = 0 means: build no memory)")
        if variant not in ("paper", "official"):
            raise ValueError(f"variant must be 'paper' or 'official', got {variant!r}")
        self.num_slots, self.scale, self.variant = num_slots, float(scale), variant
        self.key_memory = nn.Parameter(torch.randn(num_slots, src_dim) * init_std)  # M_src (N, C)
        self.value_memory = nn.Parameter(torch.randn(num_slots, tgt_dim) * init_std)  # M_tgt (N, D)
        if variant == "official":
            self.src_embed: nn.Module = nn.Linear(src_dim, src_dim)
            self.tgt_embed: nn.Module = nn.Linear(tgt_dim, tgt_dim)
        else:
            self.src_embed = nn.Identity()
            self.tgt_embed = nn.Identity()

    def address(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Eq. 1-2: softmax over slots of r * cosine(memory slot, query); (B, T, N) probabilities, computed in fp32
        whatever the autocast around it (r = 16 times a cosine: bf16 would round the logits by up to 0.06)."""
        with torch.autocast(query.device.type, enabled=False):
            sim = F.normalize(query.float(), dim=-1) @ F.normalize(memory.float(), dim=-1).t()
            return torch.softmax(self.scale * sim, dim=-1)

    def forward(
        self, src: torch.Tensor, tgt: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> BridgeOutput:
        official = self.variant == "official"
        a_src = self.address(self.src_embed(src), self.key_memory)
        value_for_recall = self.value_memory.detach() if official else self.value_memory
        with torch.autocast(src.device.type, enabled=False):  # recall and reconstruction in fp32 too
            recalled = (a_src @ value_for_recall.float()).to(src.dtype)  # Eq. 6
        out = BridgeOutput(recalled=recalled, src_address=a_src)
        if tgt is None:
            return out
        target = tgt.detach() if official else tgt
        a_tgt = self.address(self.tgt_embed(target), self.value_memory)
        with torch.autocast(tgt.device.type, enabled=False):
            recon = a_tgt @ self.value_memory.float()  # Eq. 3
        if official:
            save = masked_mean(((recon - target.float()) ** 2).mean(-1), mask)
            a_ref = a_tgt.detach()
        else:
            save = masked_mean(((recon - target.float()) ** 2).sum(-1), mask)  # Eq. 4, Alg. 1 l. 13/16
            a_ref = a_tgt
        eps = torch.finfo(a_src.dtype).tiny
        kl = (a_ref * (torch.log(a_ref.clamp_min(eps)) - torch.log(a_src.clamp_min(eps)))).sum(-1)  # Eq. 5
        bridge = masked_mean(kl, mask)
        out.tgt_address, out.reconstructed = a_tgt, recon.to(src.dtype)
        out.losses = {"save": save, "bridge": bridge}
        return out
