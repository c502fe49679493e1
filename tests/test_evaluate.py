"""The evaluation loop's pure parts: test-time views and exact counting, on hand-made tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resnet.errors import UserError
from resnet.evaluate import TTA_MODES, black_level, evaluate, translate, tta_views


def test_ten_crop_views_are_the_corners_centre_and_their_mirrors():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    weights, views = zip(*tta_views(x, "10crop", (6, 6)))
    assert weights == (0.1,) * 10 and len(views) == 10 and all(v.shape == (2, 1, 6, 6) for v in views)
    # torchvision's order: top-left, top-right, bottom-left, bottom-right, centre, then the same of the mirror
    assert torch.equal(views[0], x[..., :6, :6]) and torch.equal(views[1], x[..., :6, 2:])
    assert torch.equal(views[2], x[..., 2:, :6]) and torch.equal(views[3], x[..., 2:, 2:])
    assert torch.equal(views[4], x[..., 1:7, 1:7])
    assert torch.equal(views[5], x.flip(3)[..., :6, :6]) and torch.equal(views[9], x.flip(3)[..., 1:7, 1:7])


def test_ten_crop_of_a_batch_already_at_size_pads_first():
    x = torch.ones(1, 1, 32, 32)
    views = [v for _, v in tta_views(x, "10crop", (32, 32))]
    assert all(v.shape == (1, 1, 32, 32) for v in views)
    assert torch.equal(views[4], x)  # the centre of the padded image is the image itself
    assert views[0][0, 0, 0, 0] == 0 and views[0][0, 0, -1, -1] == 1  # a corner view holds the zero border


def test_flip_and_none():
    x = torch.rand(3, 2, 5, 7)
    [(w, v)] = tta_views(x, "none", (5, 7))
    assert w == 1.0 and v.data_ptr() == x.data_ptr()
    (wa, a), (wb, b) = tta_views(x, "flip", (5, 7))
    assert (wa, wb) == (0.5, 0.5) and torch.equal(a, x) and torch.equal(b, x.flip(3))
    with pytest.raises(UserError, match="choose one of " + ", ".join(TTA_MODES)):
        tta_views(x, "5crop", (5, 7))


def test_translate_moves_the_image_and_fills_the_border_per_channel():
    x = torch.arange(1, 1 + 2 * 3 * 4, dtype=torch.float32).view(1, 2, 3, 4)
    down_right = translate(x, 1, 1, fill=(-1.0, -2.0))
    assert torch.equal(down_right[..., 1:, 1:], x[..., :-1, :-1])
    assert (down_right[0, 0, 0] == -1).all() and (down_right[0, 1, :, 0] == -2).all()
    up_left = translate(x, -1, -1, fill=0.0)
    assert torch.equal(up_left[..., :-1, :-1], x[..., 1:, 1:]) and (up_left[..., -1, :] == 0).all()
    assert translate(x, 0, 0) is x


def test_flip_translate_views_weigh_the_untranslated_pair_half():
    x = torch.rand(2, 1, 6, 6)
    black = black_level((0.5,), (0.25,))
    assert black == (-2.0,)
    views = tta_views(x, "flip-translate", (6, 6), fill=black)
    assert [w for w, _ in views] == [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    assert sum(w for w, _ in views) == 1.0
    assert torch.equal(views[1][1], x.flip(3))
    assert torch.equal(views[2][1], translate(x, -1, -1, black))
    assert torch.equal(views[5][1], translate(x, 1, 1, black).flip(3))
    assert views[4][1][0, 0, 0, 0] == -2.0  # the border a shift down-right uncovers is black


class Fixed(nn.Module):
    """Logits that favour class ``i % 3`` for the i-th example of the batch it was built for."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[: len(x)]


def test_top1_top5_loss_and_confusion_are_exact():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0], [4.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    r = evaluate(Fixed(logits), [(torch.zeros(4, 1, 2, 2), labels)], device=torch.device("cpu"), precision="fp32",
                 num_classes=3)
    assert (r.count, r.top1, r.top5) == (4, 50.0, None)  # 3 classes: every label is in the top 5
    assert r.confusion.tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 0]]
    expected = nn.functional.cross_entropy(logits, labels).item()
    assert r.loss == pytest.approx(expected, rel=1e-6)
    assert [c["accuracy"] for c in r.per_class(["a", "b", "c"])] == [100.0, 50.0, 0.0]


def test_top5_only_with_more_than_five_classes_and_printed_only_then():
    from resnet.train.log import epoch_line, final_table, scores

    logits = torch.arange(7.0).repeat(3, 1)  # every row ranks class 6 first, class 2 fifth, class 1 sixth
    r = evaluate(Fixed(logits), [(torch.zeros(3, 1, 2, 2), torch.tensor([6, 2, 1]))], device=torch.device("cpu"),
                 precision="fp32", num_classes=7)
    assert r.top1 == pytest.approx(100 / 3) and r.top5 == pytest.approx(200 / 3)
    record = {"epoch": 1, "train_loss": 1.0, "train_error": 30.0, "val_loss": r.loss, "val_top1": r.top1,
              "val_top5": r.top5, "eval_set": "val", "lr": 0.1, "img_per_s": 100.0, "seconds": 5.0}
    assert "top-5 66.67%" in epoch_line(record, 2, 5.0, 1, 2) and "top-5" in final_table([record])
    assert "top-5 66.67%" in scores(r.top1, r.top5, r.loss)
    record["val_top5"] = None  # a run of 5 classes or fewer
    assert "top-5" not in epoch_line(record, 2, 5.0, 1, 2) + final_table([record]) + scores(r.top1, None, r.loss)
