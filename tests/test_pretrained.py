"""Pretrained weights (resnet.weights), offline: named weights are placed where torchvision / timm / the HF hub
keep them (a tmp TORCH_HOME and HF cache, random weights), then must give exactly torchvision's and timm's outputs;
head and input-channel adaptation, init_from, and every bad input ending in one sentence with exit status 2."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from resnet.cli import main
from resnet.errors import UserError
from resnet.models import create_model
from resnet.weights import (adapt_input_conv, init_model, is_named, load_into, load_model_and_card, load_weights,
                            parse_source, resolve_weights)
from resnet.weights.named import TIMM_NAMES, Named, timm_cfg, timm_resnetv2_keys

from .conftest import require_module

TV18_FILE = "resnet18-f37072fd.pth"  # basename of torchvision's ResNet18_Weights.IMAGENET1K_V1 URL
# A tiny run: the load happens before any data is read for a step; one step, 32 test images.
TINY = ["--data", "fashion-mnist", "--iterations", "1", "--batch-size", "16", "--train-limit", "64", "--set",
        "data.test_limit=32", "--set", "data.val_split=0", "--set", "test_tta=none", "--set", "ema=0"]


def randomized(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with random BN statistics too (fresh ones would hide a mixed-up running mean or variance)."""
    g = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith(("running_mean", "bias")):
            state[key] = torch.randn(value.shape, generator=g) * 0.1
        elif key.endswith(("running_var", "bn1.weight", "bn2.weight", "bn3.weight")):
            state[key] = torch.rand(value.shape, generator=g) + 0.5
    return state


@pytest.fixture(scope="module")
def tv18_file(tmp_path_factory):
    """torchvision's ResNet-18 with random weights, saved once as torchvision's loader saves them."""
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tv18") / TV18_FILE
    torch.save(randomized(torchvision.models.resnet18()), path)
    return path


@pytest.fixture
def hub(tmp_path, monkeypatch, tv18_file):
    """TORCH_HOME and the HF cache in tmp, downloads off, torchvision's ResNet-18 V1 file in torch.hub's cache."""
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("RESNET_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    try:
        os.link(tv18_file, checkpoints / TV18_FILE)  # 45 MB: written once per module, linked into each test's cache
    except OSError:
        shutil.copy(tv18_file, checkpoints / TV18_FILE)
    return checkpoints


def photo(path, seed=0):
    g = torch.Generator().manual_seed(seed)
    Image.fromarray(torch.randint(0, 256, (300, 400, 3), generator=g, dtype=torch.uint8).numpy()).save(path)
    return path


# -------------------------------------------------------------------------------------------------------- grammar


def test_source_grammar():
    P = parse_source
    assert P("torchvision") == Named("torchvision")
    assert P("torchvision:IMAGENET1K_V1") == Named("torchvision", None, "IMAGENET1K_V1")
    assert P("torchvision:resnet50") == Named("torchvision", "resnet50")
    assert P("torchvision:resnet50:IMAGENET1K_V2") == Named("torchvision", "resnet50", "IMAGENET1K_V2")
    assert P("timm:a1_in1k") == Named("timm", None, "a1_in1k")
    assert P("timm:resnet50d.ra2_in1k") == P("timm:resnet50d:ra2_in1k") == Named("timm", "resnet50d", "ra2_in1k")
    assert is_named("timm") and is_named("torchvision:resnet18") and not is_named("runs/x/model.pth")
    with pytest.raises(UserError, match="unknown model .resnet5.; did you mean .*resnet50"):
        P("torchvision:resnet5:IMAGENET1K_V1")
    with pytest.raises(UserError, match="does not name an architecture.*torchvision:ARCH"):
        load_weights("torchvision:IMAGENET1K_V1")
    with pytest.raises(UserError, match="names resnet34 but the model is resnet18"):
        load_weights("torchvision:resnet34", "resnet18")


def test_timm_builds_our_architectures_under_the_same_keys():
    """timm's model has our keys and shapes (preact: after the resnetv2 rename): one name per block, stem and width
    kind here (every name of TIMM_NAMES was checked, and outputs compared, when the table was written)."""
    timm = require_module("timm")
    for ours in ("resnet18", "resnet50", "resnet50d", "resnext50_32x4d", "wide_resnet50_2", "preact_resnet18",
                 "preact_resnet50"):
        theirs = TIMM_NAMES[ours]
        with torch.device("meta"):
            own = {k: v.shape for k, v in create_model(ours).state_dict().items()}
            ref = timm_resnetv2_keys(timm.create_model(theirs).state_dict()) if ours.startswith("preact") \
                else timm.create_model(theirs).state_dict()
        ref = {k: v.shape for k, v in ref.items() if not k.endswith("num_batches_tracked")}
        own = {k: v for k, v in own.items() if not k.endswith("num_batches_tracked")}
        assert ref == own, ours


def test_adapt_input_conv():
    w = torch.randn(8, 3, 7, 7)
    assert torch.allclose(adapt_input_conv(w, 1), w.sum(1, keepdim=True))
    w5 = adapt_input_conv(w, 5)
    assert w5.shape == (8, 5, 7, 7)
    assert torch.allclose(w5[:, :3], w * 3 / 5) and torch.allclose(w5[:, 3:], w[:, :2] * 3 / 5)
    assert adapt_input_conv(w, 3) is w


def test_one_loader_keeps_or_replaces_the_head_and_adapts_only_when_asked():
    """load_into, behind training, init_from, resume, eval, predict and export: a mismatch is one wording."""
    state = create_model("resnet20", num_classes=10).state_dict()
    assert load_into(create_model("resnet20"), state, "w.pth") == "w.pth (10 classes)"
    assert load_into(create_model("resnet20", num_classes=7), state, "w.pth", head="auto") == \
        "w.pth (10 classes) -> new 7-class head"
    with pytest.raises(UserError, match=r"^w.pth has 10 classes but the model has 7; fine-tune with a new head"):
        load_into(create_model("resnet20", num_classes=7), state, "w.pth")
    with pytest.raises(UserError, match=r"^w.pth expects 3 input channels but the model has 1; set model.kwargs"):
        load_into(create_model("resnet20", in_chans=1), state, "w.pth")
    assert load_into(create_model("resnet20", in_chans=1), state, "w.pth", adapt_input=True) == \
        "w.pth (10 classes), first conv summed from 3 to 1 input channel"
    wide = {**state, "layer2.0.conv1.weight": torch.zeros(64, 16, 3, 3)}
    with pytest.raises(UserError, match=r"^w.pth holds weights of another architecture: its key 'layer2.0.conv1."
                                        r"weight' has shape \(64, 16, 3, 3\) where resnet20 has \(32, 16, 3, 3\);"):
        load_into(create_model("resnet20"), wide, "w.pth", arch="resnet20")
    with pytest.raises(UserError, match=r"^w.pth holds weights of another architecture: the model's key "
                                        r"'layer1.3.conv1.weight' is missing from it \(\d+ missing\); pick the model"):
        load_into(create_model("resnet32"), state, "w.pth")


# ------------------------------------------------------------------------------------------ torchvision, offline


def test_torchvision_weights_from_the_hub_cache_give_torchvisions_outputs(hub):
    import torchvision

    model, card = load_model_and_card("torchvision:resnet18")  # DEFAULT = IMAGENET1K_V1 for resnet18
    ref = torchvision.models.resnet18(weights="IMAGENET1K_V1").eval()  # torchvision reads the same cached file
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)
    assert card.classes[:2] == ["tench", "goldfish"] and len(card.classes) == 1000
    assert (card.resize, card.crop, card.input_size) == (256, 224, [3, 224, 224])
    assert card.mean == pytest.approx([0.485, 0.456, 0.406]) and card.architecture == "resnet18"
    assert resolve_weights("torchvision:resnet18") == hub / TV18_FILE


def test_predict_and_export_accept_named_weights(hub, tmp_path, capsys):
    import torchvision

    image = photo(tmp_path / "photo.png")
    assert main(["predict", "torchvision:resnet18:IMAGENET1K_V1", str(image), "--format", "json", "--topk", "3"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    ref = torchvision.models.resnet18(weights=weights).eval()
    with torch.no_grad():
        probs = ref(weights.transforms()(Image.open(image).convert("RGB"))[None]).softmax(1)[0]
    assert top[0]["label"] == weights.meta["categories"][int(probs.argmax())]
    # torchvision resizes the PIL image, we resize a tensor (both antialiased bilinear): a hair apart
    assert top[0]["prob"] == pytest.approx(float(probs.max()), abs=5e-3)

    out = tmp_path / "export" / "tv18.safetensors"
    assert main(["export", "torchvision:resnet18", "--format", "safetensors", "--out", str(out)]) == 0
    exported, card = load_model_and_card(out)
    assert card.classes == weights.meta["categories"]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(exported(x), ref(x), atol=1e-5)


def test_new_head_and_one_channel_input(hub):
    model = create_model("resnet18", num_classes=10, in_chans=1)
    fc_before = model.fc.weight.clone()
    note = init_model(model, "resnet18", pretrained="torchvision")
    assert note == ("pretrained: torchvision IMAGENET1K_V1 (1000 classes) -> new 10-class head, first conv summed "
                    "from 3 to 1 input channel")
    state = torch.load(hub / TV18_FILE, weights_only=True)
    assert torch.allclose(model.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert torch.equal(model.fc.weight, fc_before)  # the model's own fresh head
    same = create_model("resnet18")
    init_model(same, "resnet18", pretrained="torchvision", reset_head=True)  # a new head even at 1000 classes
    assert not torch.equal(same.fc.weight, state["fc.weight"])


def test_train_with_pretrained_loads_before_writing_and_says_so_in_the_banner(hub, tmp_path):
    from resnet.config import load_config
    from resnet.train.trainer import Trainer

    out = tmp_path / "run"
    cfg = load_config(None, {"model.name": "resnet18", "pretrained": "torchvision", "out": str(out), "batch_size": 16,
                             "iterations": 1, "data.train_limit": 64, "data.test_limit": 32, "data.val_split": 0})
    said: list[str] = []
    trainer = Trainer(cfg, log=said.append)
    state = torch.load(hub / TV18_FILE, weights_only=True)
    assert torch.allclose(trainer.model.conv1.weight.cpu(), state["conv1.weight"].sum(1, keepdim=True))
    trainer.run()
    banner = said[0].splitlines()
    assert ("pretrained: torchvision IMAGENET1K_V1 (1000 classes) -> new 10-class head, first conv summed from 3 to 1 "
            "input channel") in banner
    assert "pretrained: torchvision" in (out / "config.yaml").read_text()


# -------------------------------------------------------------------------------------------------- timm, offline


def test_timm_weights_from_the_url_cache(hub):
    timm = require_module("timm")
    torch.manual_seed(1)
    state = randomized(timm.create_model("resnet18"), seed=1)
    cfg = timm.models.get_pretrained_cfg("resnet18")  # default tag a1_in1k: a URL, cached by torch.hub as timm does
    torch.save(state, hub / cfg.url.rsplit("/", 1)[1])
    model, card = load_model_and_card("timm:resnet18")
    ref = timm.create_model("resnet18").eval()
    ref.load_state_dict(state)
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)
    assert card.extra["timm"] == "resnet18.a1_in1k" and (card.resize, card.crop) == (235, 224)  # 224 / crop_pct .95


def test_timm_resnetv2_from_the_hf_cache_loads_into_preact(hub, tmp_path):
    """Weights that live on the Hugging Face Hub only, found in the HF cache layout (refs/main -> snapshot)."""
    timm = require_module("timm")
    torch.manual_seed(2)
    ref = timm.create_model("resnetv2_18").eval()
    ref.load_state_dict(randomized(ref, seed=2))
    repo = timm.models.get_pretrained_cfg("resnetv2_18").hf_hub_id
    snapshot = tmp_path / "hf" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(snapshot / "model.safetensors"))
    model, card = load_model_and_card("timm:preact_resnet18")
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-5)
    assert card.mean == [0.5, 0.5, 0.5] and card.architecture == "preact_resnet18"


# ------------------------------------------------------------------------------------------------------ init_from


def test_init_from_is_a_local_source_whose_head_is_kept_unless_reset(tmp_path):
    source = create_model("resnet20", num_classes=10)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    model = create_model("resnet20", num_classes=7)
    with pytest.raises(UserError, match=r"has 10 classes but the model has 7; .*reset_head=true"):
        init_model(model, "resnet20", init_from=str(tmp_path / "w.safetensors"))
    note = init_model(model, "resnet20", init_from=str(tmp_path / "w.safetensors"), reset_head=True)
    assert note == f"init_from: {tmp_path / 'w.safetensors'} (10 classes) -> new 7-class head"
    assert torch.equal(model.layer3[2].conv2.weight, source.layer3[2].conv2.weight)
    with pytest.raises(UserError, match="not both"):
        init_model(model, "resnet20", pretrained="torchvision", init_from="x.pt")


# ---------------------------------------------------------------------------------------------------- bad input


def fails(capsys, *argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def test_bad_weight_files_end_in_one_sentence_and_write_nothing(tmp_path, capsys):
    good = tmp_path / "r32.pth"
    torch.save(create_model("resnet32", in_chans=1, num_classes=10).state_dict(), good)
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[:3000])
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"conv1.weight": Exploit()}, tmp_path / "evil.pth")
    cases = {"empty.pth": "is empty", "cut.pth": "is truncated or corrupt", "evil.pth": "refusing to load",
             "r32.pth": "another architecture: its key 'layer1.2.conv1.weight' is not in resnet14"}
    for name, message in cases.items():
        out = tmp_path / f"run-{name}"
        err = fails(capsys, "train", "--pretrained", tmp_path / name, "--out", out, *TINY)
        assert message in err, err
        assert not out.exists()
    assert not marker.exists()


def test_unknown_tags_suggest_the_nearest(hub, tmp_path, capsys):
    image = photo(tmp_path / "p.png")
    err = fails(capsys, "predict", "torchvision:resnet18:IMAGENET1K_V3", image)
    assert err.endswith("unknown torchvision weights tag 'IMAGENET1K_V3' for resnet18; did you mean IMAGENET1K_V1?")
    require_module("timm")
    err = fails(capsys, "predict", "timm:resnet50d:ra2_in1", image)
    assert "unknown timm weights tag 'ra2_in1' for resnet50d" in err and "ra2_in1k" in err
    err = fails(capsys, "predict", "torchvision:resnet20", image)
    assert "torchvision has no weights for resnet20" in err


def test_no_network_and_no_cache_names_the_url_and_the_cache_path(hub, tmp_path, monkeypatch, capsys):
    image = photo(tmp_path / "p.png")
    url = "https://download.pytorch.org/models/resnet34-b627a593.pth"
    err = fails(capsys, "predict", "torchvision:resnet34", image)
    assert f"download {url} and save it as {hub / 'resnet34-b627a593.pth'}" in err and "RESNET_OFFLINE" in err

    def no_network(*args, **kwargs):
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.delenv("RESNET_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)  # no DNS: a machine without network
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    out = tmp_path / "run"
    err = fails(capsys, "train", "--model", "resnet34", "--pretrained", "torchvision", "--out", out, *TINY)
    assert "no network: download.pytorch.org cannot be reached" in err and "name resolution" in err
    assert f"save it as {hub / 'resnet34-b627a593.pth'}, or start from a local file instead" in err
    assert not out.exists() and not (hub / "resnet34-b627a593.pth").exists()
    require_module("timm")
    cfg = timm_cfg("resnet50d", None)[1]
    start = time.monotonic()
    err = fails(capsys, "predict", "timm:resnet50d", image)  # no retries against the hub: fails at once
    assert time.monotonic() - start < 15 and "no network" in err
    assert err.endswith("(--pretrained FILE.safetensors or FILE.pth)"), err  # whole, never cut mid-word
    monkeypatch.setenv("RESNET_OFFLINE", "1")
    err = fails(capsys, "predict", "timm:resnet50d", image)
    assert f"download {cfg['url']} and save it as {hub / cfg['url'].rsplit('/', 1)[1]}" in err
