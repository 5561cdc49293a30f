"""The training code cannot rot: a few real steps, target assignment, and the ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.training

TINY: dict[str, int] = {
    "photos": 2,
    "photo_width": 640,
    "photo_height": 512,
    "crop": 128,
    "batch": 4,
    "steps": 4,
    "warmup": 2,
    "val_photos": 1,
    "val_crops": 2,
    "val_crop": 256,
    "log_every": 2,
}


def test_a_few_training_steps_run_and_are_reproducible() -> None:
    import torch

    from tally_model.train import TrainConfig, train

    lines: list[str] = []
    tiny = TrainConfig(condition="mixed", **TINY)  # the shipped model's mix of conditions
    first = train(tiny, log=lines.append)
    second = train(tiny, log=lambda _: None)
    assert any(line.startswith("step 4/4") for line in lines)
    assert set(first.metrics) == {"AP50_seedling", "AP50_weed"}
    for a, b in zip(
        first.model.state_dict().values(), second.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_the_loss_goes_down_on_a_fixed_batch() -> None:
    import torch

    from tally_model.data import make_photos, random_crop
    from tally_model.loss import assign, detection_loss
    from tally_model.model import TallyNet
    from tally_model.train import _batch

    torch.manual_seed(0)
    photo = make_photos(3, 1, 640, 512, workers=1)[0]
    crops = [random_crop(photo, 128, np.random.default_rng(i)) for i in range(4)]
    images, boxes, labels, ignore = _batch(crops)
    targets = assign(boxes, labels, ignore, 128, 128)
    model = TallyNet()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        logits, distances = model(images)
        loss, _parts = detection_loss(logits, distances, targets)
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_cells_near_a_box_centre_become_its_positives() -> None:
    import torch

    from tally_model.loss import assign

    box = torch.tensor([[40.0, 40.0, 80.0, 80.0]])
    tiny = torch.tensor([[100.0, 100.0, 103.0, 103.0]])  # smaller than a cell
    targets = assign(
        [torch.cat([box, tiny])], [torch.tensor([0, 1])], [torch.zeros((0, 4))], 128, 128
    )
    classes = targets.classes[0].reshape(16, 16)
    seedling_cells = torch.nonzero(classes == 0).tolist()
    assert seedling_cells
    assert all(5 <= r <= 9 and 5 <= c <= 9 for r, c in seedling_cells)
    assert torch.nonzero(classes == 1).tolist() == [[12, 12]]


def test_export_matches_pytorch_and_accepts_any_batch_and_slice_size(tmp_path: Path) -> None:
    import onnxruntime as ort

    from tally_model.export import export_onnx
    from tally_model.model import TallyNet

    path = tmp_path / "model.onnx"
    drift = export_onnx(TallyNet().eval(), path, check_size=128)
    assert drift < 1e-3
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, size in ((1, 256), (5, 320)):
        images = np.zeros((batch, size, size, 3), np.uint8)
        (out,) = session.run(None, {"images": images})
        assert out.shape == (batch, (size // 8) ** 2, 6)


def test_generated_labels_map_onto_the_models_classes() -> None:
    import tally_inference
    import tally_synth

    # Class index k of the ONNX output means LABELS[k]; training data must use the same order.
    assert tally_synth.LABELS == tally_inference.LABELS
