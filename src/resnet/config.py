"""The run configuration: one dataclass tree, read from a YAML recipe plus command-line overrides, and validated
before any work is done (unknown keys get the nearest valid key suggested; bad values one sentence).

Every closed set of names (optimizers, schedules, precisions, TTA modes, ...) is a ``Literal`` here or in the module
that owns it; validation, ``--help`` and the builders read that one definition.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .data import PER_DATASET_FIELDS, SMALL_IMAGE, DataConfig, check_dataset_name, folder_root, is_memory
from .data.folder_stats import FolderStats, inspect_folder
from .device import Precision
from .errors import UserError
from .folder_defaults import choose, weights_architecture
from .writes import write_text
from .models import model_info
from .runs import resume_run_dir, saved_changes, saved_config_file

RECIPE_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_RECIPE = "fashion-mnist-resnet14"
FOLDER_FINETUNE_RECIPE = "finetune-imagefolder"  # the base of `--data imagefolder:PATH --pretrained W` with no --config
FOLDER_PHOTO_RECIPE = "imagefolder-photos"  # ... and of `--data imagefolder:PATH` with images of SMALL_IMAGE px and up


@dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet20"
    kwargs: dict = field(default_factory=dict)  # passed to create_model: shortcut, zero_init_residual, ...


OptimizerName = Literal["sgd", "nesterov", "adamw", "rmsprop"]  # builders: resnet.train.optim.OPTIMIZERS
ScheduleName = Literal["step", "cosine", "linear", "onecycle", "constant"]  # builders: resnet.train.optim.SCHEDULES
WarmupMode = Literal["linear", "constant"]
TTAMode = Literal["none", "flip", "flip-translate", "10crop"]  # views: resnet.evaluate.tta_views
# What a budget covers: the whole command, from its start to the end of the final test (a user's deadline), or only
# the training steps and their evaluations (start-up, the plan's timing, the final test and the finish come on top:
# runs of different models compared at equal training time).
BudgetScope = Literal["command", "training"]


@dataclass(frozen=True)
class OptimConfig:
    name: OptimizerName = "sgd"
    lr: float = 0.1  # peak learning rate at lr_batch_size; scaled linearly with the global batch
    lr_batch_size: int | None = None  # the global batch `lr` is quoted for (set to the recipe's batch_size if absent)
    momentum: float = 0.9  # sgd, nesterov and rmsprop
    weight_decay: float = 1e-4
    no_decay_bn_bias: bool = False  # no weight decay on BN parameters and biases
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw only


@dataclass(frozen=True)
class ScheduleConfig:
    name: ScheduleName = "step"
    milestones: list[float] = field(default_factory=list)  # step: epochs at which lr is multiplied by gamma
    milestone_iters: list[int] = field(default_factory=list)  # step: the same in iterations (paper CIFAR recipe)
    gamma: float = 0.1
    min_lr_factor: float = 0.0  # cosine, linear: final lr as a fraction of the peak
    pct_start: float = 0.25  # onecycle: fraction of the run spent rising
    warmup_epochs: float = 0.0  # warm-up in front of any schedule
    warmup_iters: int = 0  # the same in iterations (added to warmup_epochs)
    warmup_mode: WarmupMode = "linear"  # linear (from warmup_factor to 1) | constant (warmup_factor, then 1: paper ResNet-110)
    warmup_factor: float = 0.1


@dataclass(frozen=True)
class FinetuneConfig:
    freeze_stages: int = 0  # 0: train everything; K: the stem and the first K stages keep their weights (BN in eval mode); -1: the whole backbone (only the head trains)
    backbone_lr: float = 1.0  # lr multiplier of the pretrained layers against the new head (e.g. 0.1)
    head_warmup_epochs: float = 0.0  # train the new head alone this long before the backbone joins


_DURATION = re.compile(r"(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?")


def parse_duration(text: str | float) -> float:
    """``90s``, ``10m``, ``1h``, ``1h30m``, ``1.5h`` or a plain number of seconds -> seconds (ValueError if not)."""
    t = str(text).strip().lower().replace(" ", "")
    sign, t = (-1, t[1:]) if t.startswith("-") else (1, t)
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        seconds = float(t)
    else:
        m = _DURATION.fullmatch(t)
        if not t or m is None:
            raise ValueError(f"{text!r} is not a duration; write e.g. 90s, 10m, 1h or 1h30m")
        seconds = sum(float(m.group(k) or 0) * unit for k, unit in (("h", 3600), ("m", 60), ("s", 1)))
    if sign * seconds <= 0:  # a negative duration is named as written (it reaches here from --budget -5m)
        raise ValueError(f"{f'-{t}' if sign < 0 else repr(text)} is not a positive duration; write e.g. 90s, 10m, 1h "
                         f"or 1h30m")
    return seconds


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    epochs: int | None = 30  # ignored when iterations or budget is set
    iterations: int | None = None  # train for exactly this many optimizer steps
    budget: str | None = None  # train for as long as fits this wall-clock time (10m, 90s, 1h30m): see budget_scope
    budget_scope: BudgetScope = "command"  # what the budget covers (see BudgetScope)
    max_epochs: int | None = None  # a budget run stops after this many epochs even when more would fit (e.g. on a GPU)
    batch_size: int = 128  # per process; the global batch is batch_size x world size
    label_smoothing: float = 0.0
    ema: float = 0.0  # decay of the exponential moving average of weights (0 = off), e.g. 0.999
    ema_every: int = 1  # update the EMA every N steps
    ema_warmup: bool = True  # decay of update n is min(ema, 1 - (1 + n) ** -2/3): early EMA evaluations mean something
    precision: Precision = "auto"  # auto: bf16 where the hardware runs it natively, else fp32 (fp16 on old GPUs)
    channels_last: bool = True
    compile: bool = False  # torch.compile the model
    cuda_graph: bool = True  # on one CUDA device, replay each step's forward and backward from a CUDA graph
    grad_clip: float = 0.0  # max gradient norm (0 = off)
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms: bit-exact reruns and resumes
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int | None = None  # CPU threads per process (None = torch's default)
    sync_bn: bool = False  # SyncBatchNorm across processes
    eval_every: int = 1  # epochs between evaluations (the last epoch is always evaluated)
    log_every: int = 50  # steps between training-error records in steps.jsonl
    checkpoint_every: int = 0  # steps between checkpoints, besides every epoch end (0 = epoch ends only)
    keep_checkpoints: int = 2  # step checkpoints kept besides last.pt and best.pt
    snapshot_epochs: list[int] = field(default_factory=list)  # keep the weights at these epoch ends for good (snapshots/epoch-N.safetensors; 0 = the initial weights)
    test_tta: TTAMode = "none"  # test-time augmentation of the final test (and the default of `resnet eval`)
    precise_bn: int = 2048  # before every evaluation, re-estimate the BatchNorm statistics on this many training images (0 = off)
    init_from: str | None = None  # start from these weights (.safetensors, checkpoint .pt, or a run directory)
    reset_head: bool = False  # with init_from: keep a fresh classifier (fine-tuning on another label set)
    pretrained: str | None = None  # torchvision[:TAG] | timm[:TAG] | a weights file (.pth .pt .bin .safetensors) | a run directory or checkpoint
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    out: str | None = None  # run directory (default runs/<recipe>, numbered if taken)
    recipe: str | None = None  # name of the recipe this config came from (informational)
    chosen: list[str] = field(default_factory=list)  # defaults chosen from an image folder's images, and why


# ----------------------------------------------------------------------------------------------- YAML and overrides


def recipe_path(name_or_path: str) -> Path:
    """A shipped recipe name (``cifar10-resnet56-paper``) or a path to a YAML file. A directory that happens to
    bear a recipe's name (``resnet compare`` writes runs/compare-fashion-mnist) does not hide the recipe."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix in (".yaml", ".yml"):
        raise UserError(f"config file {name_or_path} does not exist; give a YAML file or a recipe name "
                        f"from `resnet recipes`")
    candidate = RECIPE_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    close = difflib.get_close_matches(name_or_path, list_recipes(), n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else "run `resnet recipes` to list them."
    raise UserError(f"unknown recipe {name_or_path!r}; {hint}")


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def read_recipe(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict:
    """Read a recipe as a plain dict, following ``base:`` (a recipe it extends) recursively."""
    path = recipe_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values")
    name = data.get("recipe", path.stem)
    base = data.pop("base", None)
    if base:
        if base in _seen:
            raise UserError(f"recipe {path} extends itself through {base!r}")
        own = data
        data = merge(read_recipe(base, _seen + (base,)), own)
        prefer_asked_length(data, own)  # a recipe's own epochs replace its base's budget or iterations
    data["recipe"] = name
    return data


def merge(base: dict, override: dict) -> dict:
    """Deep-merge ``override`` into a copy of ``base``; nested mappings merge, anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "kwargs":
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """``set_dotted(d, "optim.lr", 0.05)``; ``model.kwargs.shortcut`` reaches into free-form dicts too."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise UserError(f"cannot set {dotted!r}: {key!r} is not a section")
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=0.05"`` -> ("optim.lr", 0.05); the value is read as YAML (numbers, true/false, [lists], null)."""
    if "=" not in text:
        raise UserError(f"--set expects key=value, got {text!r}; e.g. --set optim.lr=0.05")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


# ------------------------------------------------------------------------------------------------------ validation


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints are accepted for floats); one sentence on mismatch."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and ("on" if value else "off") in choices:
            value = "on" if value else "off"  # YAML 1.1 reads a bare off/on (no/yes) as a boolean
        if value not in choices:
            raise UserError(f"{where} must be one of {', '.join(map(str, choices))}, not {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a section of keys, not {value!r}")
        return build(tp, value, where + ".")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where} must be a list, e.g. [30, 60], not {value!r}")
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a mapping, not {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, not {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise UserError(f"{where} must be a whole number, not {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as text; accept it as the number it is
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where} must be a number, not {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UserError(f"{where} must be text, not {value!r}")
        return str(value)
    return value


def build(cls, data: dict, prefix: str = ""):
    """Construct dataclass ``cls`` from ``data``, rejecting unknown keys with the nearest valid one."""
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in types_:
            close = difflib.get_close_matches(key, list(types_), n=1, cutoff=0.5)
            hint = f"did you mean {prefix}{close[0]}?" if close else f"valid keys: {', '.join(types_)}."
            raise UserError(f"unknown config key {prefix}{key!r}; {hint}")
        kwargs[key] = _coerce(value, types_[key], prefix + key)
    return cls(**kwargs)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise UserError(message)


def validate(cfg: Config) -> Config:
    """Value checks that types cannot express; called before any data is read or any file written."""
    model_info(cfg.model.name)
    check_dataset_name(cfg.data.name)
    _check(cfg.batch_size >= 1, f"batch_size must be at least 1, got {cfg.batch_size}")
    _check(cfg.iterations is not None or cfg.epochs is not None, "set epochs or iterations")
    if cfg.budget is not None:
        try:
            parse_duration(cfg.budget)
        except ValueError as exc:
            raise UserError(f"budget {exc}") from None
        _check(cfg.iterations is None, "set either budget or iterations, not both: a budget decides the iterations")
        _check(cfg.schedule.name != "step", "a budget run needs a schedule that ends where the budget does: use "
                                            "schedule cosine, linear, onecycle or constant, not step")
    _check(cfg.epochs is None or cfg.epochs >= 1, f"epochs must be at least 1, got {cfg.epochs}")
    _check(cfg.max_epochs is None or cfg.max_epochs >= 1, f"max_epochs must be at least 1, got {cfg.max_epochs}")
    _check(cfg.iterations is None or cfg.iterations >= 1, f"iterations must be at least 1, got {cfg.iterations}")
    _check(cfg.optim.lr > 0, f"optim.lr must be positive, got {cfg.optim.lr}")
    _check(cfg.optim.lr_batch_size is None or cfg.optim.lr_batch_size >= 1, "optim.lr_batch_size must be positive")
    _check(0 <= cfg.optim.momentum < 1, f"optim.momentum must be in [0, 1), got {cfg.optim.momentum}")
    _check(cfg.optim.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {cfg.optim.weight_decay}")
    _check(len(cfg.optim.betas) == 2 and all(0 <= b < 1 for b in cfg.optim.betas), "optim.betas must be two "
                                                                                    "numbers in [0, 1)")
    s = cfg.schedule
    _check(0 < s.gamma <= 1, f"schedule.gamma must be in (0, 1], got {s.gamma}")
    _check(0 < s.warmup_factor <= 1, f"schedule.warmup_factor must be in (0, 1], got {s.warmup_factor}")
    _check(s.warmup_epochs >= 0 and s.warmup_iters >= 0, "warm-up lengths must be >= 0")
    _check(0 < s.pct_start < 1, f"schedule.pct_start must be in (0, 1), got {s.pct_start}")
    _check(0 <= s.min_lr_factor <= 1, f"schedule.min_lr_factor must be in [0, 1], got {s.min_lr_factor}")
    _check(all(m > 0 for m in s.milestones + s.milestone_iters), "schedule milestones must be positive")
    d = cfg.data
    _check(d.val_split >= 0, f"data.val_split must be >= 0, got {d.val_split}")
    _check(d.train_limit is None or d.train_limit >= 1, f"data.train_limit must be at least 1, got {d.train_limit}")
    _check(d.test_limit is None or d.test_limit >= 1, f"data.test_limit must be at least 1, got {d.test_limit}")
    _check(d.crop_padding >= 0, f"data.crop_padding must be >= 0, got {d.crop_padding}")
    _check(0 <= d.random_erasing <= 1, f"data.random_erasing must be a probability, got {d.random_erasing}")
    _check(d.mixup >= 0 and d.cutmix >= 0, "data.mixup and data.cutmix must be >= 0")
    _check(d.mix_from_epochs is None or d.mix_from_epochs > 0,
           f"data.mix_from_epochs must be a positive number of epochs or null, got {d.mix_from_epochs}")
    _check(d.workers >= 0, f"data.workers must be >= 0, got {d.workers}")
    eval_crop = d.eval_crop or d.image_size
    _check(d.image_size >= 8 and eval_crop >= 8, "data.image_size and data.eval_crop must be at least 8")
    _check(d.eval_resize >= eval_crop, f"data.eval_resize ({d.eval_resize}) must be >= the evaluation crop "
                                       f"({eval_crop})")
    _check(0 < d.min_scale <= 1, f"data.min_scale must be in (0, 1], got {d.min_scale}")
    _check(0 <= cfg.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    _check(0 <= cfg.ema < 1, f"ema must be a decay in [0, 1), e.g. 0.999, got {cfg.ema}")
    _check(cfg.ema_every >= 1, "ema_every must be at least 1")
    _check(cfg.grad_clip >= 0, f"grad_clip must be >= 0, got {cfg.grad_clip}")
    _check(cfg.eval_every >= 1 and cfg.log_every >= 1, "eval_every and log_every must be at least 1")
    _check(cfg.checkpoint_every >= 0 and cfg.keep_checkpoints >= 0, "checkpoint_every and keep_checkpoints must "
                                                                    "be >= 0")
    _check(all(isinstance(e, int) and e >= 0 for e in cfg.snapshot_epochs),
           f"snapshot_epochs must be epoch numbers >= 0 (0 = the initial weights), got {cfg.snapshot_epochs}")
    _check(cfg.threads is None or cfg.threads >= 1, "threads must be at least 1")
    _check(cfg.precise_bn >= 0, f"precise_bn must be a number of training images >= 0 (0 = off), got {cfg.precise_bn}")
    f = cfg.finetune
    _check(f.freeze_stages >= -1, f"finetune.freeze_stages must be -1 (the whole backbone), 0 (none) or a number of "
                                  f"stages, got {f.freeze_stages}")
    _check(f.backbone_lr > 0, f"finetune.backbone_lr must be positive (to keep layers fixed use "
                              f"finetune.freeze_stages), got {f.backbone_lr}")
    _check(f.head_warmup_epochs >= 0, f"finetune.head_warmup_epochs must be >= 0, got {f.head_warmup_epochs}")
    return cfg


def load_config(recipe: str | None = None, overrides: dict[str, Any] | None = None,
                sets: list[str] | None = None, resume: str | Path | None = None) -> Config:
    """What the user asks for, validated: the steps of :data:`LOAD_STEPS` in order, then :func:`validate`. A new run:
    the recipe (default: DEFAULT_RECIPE, ResNet-14 on Fashion-MNIST; on an image folder FOLDER_FINETUNE_RECIPE for
    --pretrained weights, FOLDER_PHOTO_RECIPE for images of SMALL_IMAGE px and up), then ``overrides`` (dotted keys),
    then ``--set`` strings; on an image folder what none of them sets follows the folder's images
    (:mod:`resnet.folder_defaults`). A resumed run (``resume``: a run directory, a checkpoint, or ``auto`` with
    ``out``): the run's saved config with the changes its earlier resumes made, then the same overrides."""
    request = Request(recipe, dict(overrides or {}), [parse_override(text) for text in sets or []], resume)
    for step in LOAD_STEPS:
        step(request)
    return validate(build(Config, request.data))


@dataclass
class Request:
    """What :func:`load_config` was asked, and the config its steps build from it (a plain dict, ``data``)."""

    recipe: str | None  # --config
    overrides: dict[str, Any]  # dotted keys from the command line's own options
    sets: list[tuple[str, Any]]  # --set KEY=VALUE, in order
    resume: str | Path | None
    data: dict = field(default_factory=dict)  # the config being built
    recipe_data: dict = field(default_factory=dict)  # the data section of the recipe (or saved config) as read
    chosen: dict[str, Any] = field(default_factory=dict)  # what the folder's images chose (dotted -> value)

    @property
    def asked(self) -> dict[str, Any]:
        """Every key the caller set, by either route."""
        return {**self.overrides, **dict(self.sets)}

    @property
    def data_name(self) -> str:
        return str(self.asked.get("data.name") or DataConfig.name)

    @functools.cached_property
    def folder(self) -> FolderStats | None:
        """The images of the folder a new run names on the command line (None: a named set, or a resume)."""
        return folder_stats(self.data_name) if self.resume is None else None


def read_base(request: Request) -> None:
    """The recipe asked for; else a resumed run's saved config; else the image folder's recipe (fine-tuning for
    --pretrained weights, photos for images of SMALL_IMAGE px and up); else DEFAULT_RECIPE."""
    recipe, folder = request.recipe, request.folder
    if request.resume is not None:
        if recipe is not None:
            raise UserError("--resume continues a run with its own config.yaml; drop --config")
        data = saved_config(request.resume, request.asked.get("out"))
    elif recipe is None and not is_memory(request.data_name) and request.asked.get("pretrained"):
        data = read_recipe(FOLDER_FINETUNE_RECIPE)
    elif recipe is None and folder is not None and folder.short_side >= SMALL_IMAGE:
        data = read_recipe(FOLDER_PHOTO_RECIPE)
    else:
        data = read_recipe(recipe or DEFAULT_RECIPE)
    request.data = data
    request.recipe_data = dict(data["data"]) if isinstance(data.get("data"), dict) else {}


def pin_lr_batch_size(request: Request) -> None:
    """The recipe's lr is quoted for the recipe's own batch: pin that before --batch-size changes the batch, so that
    the linear scaling rule applies to the override (and to more processes) rather than moving with it."""
    optim = request.data.setdefault("optim", {})
    if isinstance(optim, dict) and optim.get("lr_batch_size") is None:
        optim["lr_batch_size"] = request.data.get("batch_size", Config.batch_size)


def apply_overrides(request: Request) -> None:
    for key, value in request.overrides.items():
        set_dotted(request.data, key, value)


def length_asked_first(request: Request) -> None:
    """A run length asked for replaces the recipe's own (:func:`prefer_asked_length`)."""
    prefer_asked_length(request.data, request.asked)


def apply_sets(request: Request) -> None:
    """--set strings, last, so that they win over everything before them."""
    for key, value in request.sets:
        set_dotted(request.data, key, value)


def drop_other_datasets_fields(request: Request) -> None:
    """When the command line moves a recipe to another data set, the recipe's values of fields that describe its own
    data set (``val_split: 5000`` of Fashion-MNIST, ...) fall back to their defaults unless given again."""
    section, own = request.data.get("data"), request.recipe_data
    if not isinstance(section, dict) or section.get("name") == own.get("name", DataConfig.name):
        return
    for key in PER_DATASET_FIELDS:
        if key in own and f"data.{key}" not in request.asked:
            section.pop(key, None)


def follow_the_folder(request: Request) -> None:
    """On an image folder (the command line's, or the one a --config recipe names), what no one set follows the
    folder's images (:func:`resnet.folder_defaults.choose`); why is kept under ``chosen``."""
    section, stats = request.data.get("data"), request.folder
    if request.resume is None and isinstance(section, dict) and section.get("name", request.data_name) != \
            request.data_name:
        stats = folder_stats(str(section["name"]))
    if stats is None:
        return
    asked = request.asked
    request.chosen, why = choose(stats, request.data, set(asked), recipe_given=request.recipe is not None,
                                 weights_arch=weights_architecture(asked.get("pretrained")))
    for key, value in request.chosen.items():
        set_dotted(request.data, key, value)
    request.data["chosen"] = why


def evaluate_at_the_asked_size(request: Request) -> None:
    """An image size asked for moves the evaluation's resize with it, unless that was set too: small images are
    evaluated whole at the size trained, photos resized in the recipe's proportion."""
    section, own = request.data.get("data"), request.recipe_data
    if "data.image_size" not in request.asked or not isinstance(section, dict) or \
            "data.eval_resize" in request.asked.keys() | request.chosen.keys():
        return
    size = int(section["image_size"])
    ratio = float(own.get("eval_resize", DataConfig.eval_resize)) / float(own.get("image_size", DataConfig.image_size))
    section["eval_resize"] = size if size < SMALL_IMAGE else max(size, round(size * ratio))


# What load_config does, in order: a new rule is a new step here.
LOAD_STEPS = (read_base, pin_lr_batch_size, apply_overrides, length_asked_first, apply_sets,
              drop_other_datasets_fields, follow_the_folder, evaluate_at_the_asked_size)


def folder_stats(name: str) -> FolderStats | None:
    """What the image folder of ``imagefolder:PATH`` holds (None for a named set, or a folder without train/: the run
    reports a missing folder when it opens its data)."""
    if not isinstance(name, str) or is_memory(name) or not (folder_root(name) / "train").is_dir():
        return None
    return inspect_folder(folder_root(name))


def saved_config(resume: str | Path, out: str | None) -> dict:
    """The config (a plain dict) a resumed run continues with: the run's config.yaml as first written, with the
    changes its earlier resumes asked for (recorded in run.json) applied."""
    data = saved_config_file(resume, out)
    for key, value in saved_changes(resume_run_dir(resume, out)).items():
        set_dotted(data, key, value)
    return data


def resume_changes(first: dict, cfg: Config) -> dict[str, Any]:
    """What a resumed run's config changes against the run's first config.yaml (dotted key -> value), kept in its
    run.json for later resumes; ``out`` only locates the run, so it is not a change."""
    return changes({k: v for k, v in first.items() if k != "out"},
                   {k: v for k, v in to_dict(cfg).items() if k != "out"})


def changes(saved: dict, now: dict, prefix: str = "") -> dict[str, Any]:
    """The dotted keys whose values differ between two config dicts (``to_dict`` form), and their new values."""
    found = {}
    for key in now.keys() | saved.keys():
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "kwargs":
            found.update(changes(a, b, f"{prefix}{key}."))
        elif a != b:
            found[prefix + key] = b
    return found


LENGTH_FIELDS = ("budget", "iterations", "epochs")  # what decides how long a run trains, strongest first


def prefer_asked_length(data: dict, asked: dict) -> None:
    """A run length the caller asks for (``epochs``, ``iterations`` or ``budget``) replaces the recipe's own: a
    budgeted recipe run with ``iterations=300`` trains 300 steps, an iteration-based one run with a budget fills it,
    and a budget asked for is not cut short by the recipe's ``max_epochs``. (``epochs`` needs no clearing: it only
    counts when neither of the others is set.)"""
    if any(asked.get(key) is not None for key in LENGTH_FIELDS):
        for key in ("budget", "iterations", "max_epochs"):
            if key not in asked:
                data[key] = None


def config_from_dict(data: dict) -> Config:
    """Rebuild a saved (resolved) config, e.g. from a checkpoint or a run's config.yaml."""
    return validate(build(Config, data))


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: Path) -> None:
    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False), "config")
