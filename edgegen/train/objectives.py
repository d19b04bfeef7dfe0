"""Training losses: plain next-token (AR) and MARS multi-token (arXiv 2604.07023).

MARS trains on [noisy | clean]: noisy is the sequence with every label token replaced by
<|mask|>, clean is the original, both with positions 0..n-1. Attention, with block = position // B:
clean -> clean causal; noisy -> noisy causal inside its own block; noisy block k -> clean blocks < k.
Logits are shifted one step right over the whole 2n sequence (row i is the output at i-1), so a
mask predicts the token one position after it; loss = CE(noisy) + ar_weight * CE(clean) on labels.
"""
import torch
import torch.nn.functional as F

from .data import Example

IGNORE = -100


def pad(examples: list[Example], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, n], labels [B, n] (IGNORE where not trained and on padding), real-token mask [B, n]."""
    n = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), n), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), n), IGNORE, dtype=torch.long)
    real = torch.zeros((len(examples), n), dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, :len(e.ids)] = torch.tensor(e.ids)
        labels[row, :len(e.ids)] = torch.where(torch.tensor(e.trained), torch.tensor(e.ids), IGNORE)
        real[row, :len(e.ids)] = 1
    return ids.to(device), labels.to(device), real.to(device)


def ar_loss(model, examples: list[Example], pad_id: int) -> dict:
    ids, labels, real = pad(examples, pad_id, model.device)
    logits = model(ids, attention_mask=real).logits
    return {"loss": F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE)}


def mars_attention_mask(n: int, block_size: int) -> torch.Tensor:
    """[2n, 2n] boolean, True where query (row) may attend key (column); noisy half first."""
    position = torch.arange(n)
    block = position // block_size
    causal = position[:, None] >= position[None, :]
    same_block = block[:, None] == block[None, :]
    earlier_block = block[None, :] < block[:, None]
    top = torch.cat([causal & same_block, earlier_block], dim=1)  # noisy queries: noisy keys | clean keys
    bottom = torch.cat([torch.zeros(n, n, dtype=torch.bool), causal], dim=1)  # clean queries
    return torch.cat([top, bottom], dim=0)


def mars_loss(model, examples: list[Example], pad_id: int, mask_id: int, block_size: int,
              ar_weight: float = 1.0) -> dict:
    ids, labels, _ = pad(examples, pad_id, model.device)  # right padding: no real token attends a pad under this mask
    batch, n = ids.shape
    noisy = torch.where(labels != IGNORE, mask_id, ids)
    positions = torch.arange(n, device=ids.device).repeat(2)[None].expand(batch, -1)
    mask = mars_attention_mask(n, block_size).to(ids.device)[None, None].expand(batch, 1, -1, -1)
    logits = model(torch.cat([noisy, ids], dim=1), attention_mask=mask, position_ids=positions).logits
    shifted = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)  # row i <- output at i-1 (row 0 never a label)
    noisy_loss = F.cross_entropy(shifted[:, :n].flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)
    clean_loss = F.cross_entropy(shifted[:, n:].flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)
    return {"loss": noisy_loss + ar_weight * clean_loss, "noisy": noisy_loss, "clean": clean_loss}
