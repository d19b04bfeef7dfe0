"""The MARS training objective against its definition, and the trainer end to end on a tiny model."""
import pytest
import torch

from edgegen import EdgegenError
from edgegen.export.checkpoint import read_model_spec
from edgegen.export.verify import load_reference
from edgegen.train.data import Example
from edgegen.train.objectives import ar_loss, mars_attention_mask, mars_loss
from edgegen.train.trainer import TrainConfig, train


def brute_force_mask(n: int, block_size: int) -> torch.Tensor:
    """The rule as written in the MARS reference, one query/key pair at a time; noisy half first."""
    allowed = torch.zeros(2 * n, 2 * n, dtype=torch.bool)
    for q in range(2 * n):
        for k in range(2 * n):
            q_noisy, k_noisy = q < n, k < n
            qp, kp = q % n, k % n
            if not q_noisy and not k_noisy:
                allowed[q, k] = kp <= qp
            elif q_noisy and k_noisy:
                allowed[q, k] = kp <= qp and kp // block_size == qp // block_size
            elif q_noisy and not k_noisy:
                allowed[q, k] = kp // block_size < qp // block_size
    return allowed


@pytest.mark.parametrize("n, block_size", [(1, 2), (7, 2), (12, 4), (13, 4), (9, 8)])
def test_mars_mask_matches_the_definition(n, block_size):
    assert torch.equal(mars_attention_mask(n, block_size), brute_force_mask(n, block_size))


@pytest.fixture
def tiny(checkpoints):
    src = checkpoints["mars"]
    return load_reference(src, read_model_spec(src))


def example(ids, prompt_length):
    return Example(ids, [i >= prompt_length for i in range(len(ids))])


def test_clean_half_is_the_plain_causal_model(tiny):
    """The 4D mask really reaches attention: clean logits equal an ordinary forward of the clean tokens."""
    ids = list(range(10, 30))
    captured = {}
    original = tiny.forward

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        captured["logits"] = out.logits
        return out

    tiny.forward = spy
    with torch.no_grad():
        mars_loss(tiny, [example(ids, 8)], pad_id=0, mask_id=3, block_size=4)
        plain = original(torch.tensor([ids])).logits
    del tiny.forward
    torch.testing.assert_close(captured["logits"][:, len(ids):], plain, atol=1e-4, rtol=1e-4)
    # and the first noisy block sees no clean token: it matches a forward of the noisy block alone
    noisy = [3 if i >= 8 else t for i, t in enumerate(ids)]
    with torch.no_grad():
        alone = original(torch.tensor([noisy[:4]])).logits
    torch.testing.assert_close(captured["logits"][:, :4], alone, atol=1e-4, rtol=1e-4)


def test_padding_does_not_change_the_loss(tiny):
    long, unlabeled = example(list(range(10, 30)), 8), Example(list(range(40, 46)), [False] * 6)
    with torch.no_grad():
        for objective in (lambda batch: mars_loss(tiny, batch, 0, 3, 4)["loss"],
                          lambda batch: ar_loss(tiny, batch, 0)["loss"]):
            torch.testing.assert_close(objective([long]), objective([unlabeled, long]), atol=1e-5, rtol=1e-5)


def test_a_few_steps_lower_both_losses(tiny, tmp_path):
    data = [example([5 + (i * 7 + j) % 50 for j in range(24)], 6) for i in range(16)]

    def loss(model, batch):
        return mars_loss(model, batch, pad_id=0, mask_id=3, block_size=4)

    with torch.no_grad():
        before = loss(tiny, data)
    train(tiny, data, loss, TrainConfig(steps=30, lr=3e-3, batch_size=8, log_every=100), tmp_path)
    with torch.no_grad():
        after = loss(tiny, data)
    assert after["noisy"] < before["noisy"] * 0.8 and after["clean"] < before["clean"] * 0.8


def test_interrupted_training_resumes_where_it_stopped(checkpoints, tmp_path):
    src = checkpoints["mars"]
    data = [example([5 + (i * 3 + j) % 40 for j in range(16)], 4) for i in range(8)]
    config = TrainConfig(steps=6, batch_size=4, save_every=3)
    calls = []

    def loss(model, batch):
        calls.append(1)
        if len(calls) == 5:  # the process dies during step 5, after the checkpoint of step 3
            raise RuntimeError("killed")
        return ar_loss(model, batch, pad_id=0)

    straight = load_reference(src, read_model_spec(src))
    expected = train(straight, data, lambda m, b: ar_loss(m, b, pad_id=0), config, tmp_path / "straight")
    with pytest.raises(RuntimeError):
        train(load_reference(src, read_model_spec(src)), data, loss, config, tmp_path / "crashed")
    resumed = load_reference(src, read_model_spec(src))
    log = train(resumed, data, lambda m, b: ar_loss(m, b, pad_id=0), config, tmp_path / "crashed", resume=True)
    assert [row["loss"] for row in log] == pytest.approx([row["loss"] for row in expected], rel=1e-6)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)


def test_unfinished_run_is_not_overwritten(checkpoints, tmp_path):
    src = checkpoints["mars"]
    data = [example(list(range(5, 21)), 4)] * 4
    config = TrainConfig(steps=4, batch_size=2, save_every=2)
    train(load_reference(src, read_model_spec(src)), data, lambda m, b: ar_loss(m, b, 0), config, tmp_path)
    with pytest.raises(EdgegenError, match="unfinished run; pass --resume"):
        train(load_reference(src, read_model_spec(src)), data, lambda m, b: ar_loss(m, b, 0), config, tmp_path)
