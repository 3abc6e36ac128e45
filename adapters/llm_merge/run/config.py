"""The ``evogm-opt merge CONFIG.yaml`` schema, validated before anything heavy is loaded.

Relative paths are resolved against the YAML file's folder, so a config and its data can move together. A
``base`` that is not an existing folder is taken as a Hugging Face hub id. Every key is checked: a typo is an
error naming the allowed keys, not a silently ignored setting.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_merge.model.names import (
    AUTO_CLASSES,
    DTYPE_NAMES,
    MODEL_TYPES,
    ON_OTHER_BASE,
    BaseModelTypeError,
    base_model_type,
)

if TYPE_CHECKING:
    from llm_merge.merges.base import MergeMethod


class ConfigError(ValueError):
    """A merge config that does not follow the schema."""


@dataclass(frozen=True)
class ExpertSpec:
    path: str
    name: str
    kind: str = "auto"  # auto | lora | dense


@dataclass(frozen=True)
class TaskSpec:
    name: str
    val: str  # a JSONL file, or with ``lm_eval`` the lm-eval task name scored for the search
    test: str | None = None
    weight: float = 1.0
    max_new_tokens: int = 16
    lm_eval: dict[str, Any] | None = None  # {metric, limit, include_path, num_fewshot}: val/test are lm-eval tasks


@dataclass(frozen=True)
class OptimizerSpec:
    name: str = "evogm"
    budget: int = 100  # evaluations
    seed: int = 0
    popsize: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # further constructor arguments (preset, config, ...)


@dataclass(frozen=True)
class StoppingSpec:
    patience: int | None = None  # generations without an improvement larger than min_improvement
    min_improvement: float = 0.0  # in validation-score units
    max_seconds: float | None = None  # search wall-clock, summed over resumed invocations


@dataclass(frozen=True)
class MergeRunConfig:
    base: str
    experts: tuple[ExpertSpec, ...]
    seen: tuple[TaskSpec, ...]
    output: str
    unseen: tuple[TaskSpec, ...] = ()
    tokenizer: str | None = None
    model_type: str = "auto"  # auto | causal | seq2seq: the transformers class of the base (llm_merge.model.loading)
    dtype: str = "bfloat16"
    device: str = "auto"
    method: str = "task_arithmetic"
    method_options: dict[str, Any] = field(default_factory=dict)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    stopping: StoppingSpec = field(default_factory=StoppingSpec)
    layout: str = "per_expert"  # per_expert | per_layer_group | per_module_type (llm_merge.model.layouts)
    layout_groups: int = 4  # decoder-layer groups for per_layer_group
    simplex: bool = False  # per group, weights = softmax(sharpness · z)
    simplex_sharpness: float = 4.0
    batch_size: int = 32
    eval_path: str = "auto"  # auto | rebuild | batched (MergeFitness.choose_path)
    baselines: bool = True
    save_model: bool = True
    threads: int | None = 1  # torch threads for the model's work (see _threads); None: torch's own default
    on_other_base: str = "warn"  # a LoRA adapter trained on another base model: warn | error | ignore

    def fingerprint(self) -> str:
        """Hash of everything that changes which points are evaluated and what they score.

        The budget and the output folder are left out: a run may be resumed with a larger budget or moved.
        """
        data = asdict(self)
        data.pop("output")
        data["optimizer"].pop("budget")
        data.pop("baselines")
        data.pop("save_model")
        data.pop("stopping")  # like the budget: changing when to stop does not change what is evaluated
        data.pop("threads")  # how fast, not what
        data.pop("on_other_base")  # whether to warn
        data.pop("model_type")  # it agrees with the base's config or the run is refused: the same model either way
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_keys(where: str, data: Any, allowed: set[str], required: set[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    missing = sorted(required - set(data))
    if missing:
        raise ConfigError(f"{where}: missing keys {missing}")
    return data


def _path(root: Path, value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a path, got {value!r}")
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (root / p))


# One torch thread unless the config says otherwise. Measured on the demo's model on this project's 2-core machine
# (docs/performance.md): quiet, 0.066–0.069 s per evaluation whatever the count; beside other work, torch's default
# (2 threads here) took 0.16–1.04 s against 0.09–0.11 s on one, since its threads spin waiting for each other.
DEFAULT_THREADS = 1
_TASK_KEYS = {"name", "val", "test", "weight", "max_new_tokens", "lm_eval"}
_TOP_KEYS = {"base", "tokenizer", "dtype", "device", "experts", "tasks", "method", "optimizer", "batch_size"}
_TOP_KEYS |= {"eval_path", "stopping", "layout", "simplex", "baselines", "save_model", "output", "threads"}
_TOP_KEYS |= {"on_other_base", "model_type"}
_LAYOUTS = ("per_expert", "per_layer_group", "per_module_type")


def _existing_file(root: Path, value: Any, where: str) -> str:
    path = _path(root, value, where)
    if not Path(path).is_file():
        raise ConfigError(f"{where}: no such file {path}")
    return path


def _task(root: Path, item: Any, w: str) -> TaskSpec:
    item = _check_keys(w, item, _TASK_KEYS, {"name", "val"})
    lm = item.get("lm_eval")
    if lm is not None:
        lm = {} if lm is True else lm
        lm = dict(_check_keys(f"{w}.lm_eval", lm, {"metric", "limit", "include_path", "num_fewshot"}))
        if "include_path" in lm:
            lm["include_path"] = _path(root, lm["include_path"], f"{w}.lm_eval.include_path")
    weight, max_new = item.get("weight", 1.0), item.get("max_new_tokens", 16)
    if not isinstance(weight, (int, float)) or not weight > 0:
        raise ConfigError(f"{w}.weight must be a positive number, got {weight!r}")
    if not isinstance(max_new, int) or max_new < 1:
        raise ConfigError(f"{w}.max_new_tokens must be a positive integer, got {max_new!r}")
    test = item.get("test")
    resolve = (lambda v, _w: str(v)) if lm is not None else (lambda v, ww: _existing_file(root, v, ww))
    return TaskSpec(
        name=str(item["name"]),
        val=resolve(item["val"], f"{w}.val"),
        test=None if test is None else resolve(test, f"{w}.test"),
        weight=float(weight),
        max_new_tokens=max_new,
        lm_eval=lm,
    )


def _tasks(root: Path, items: Any, where: str) -> tuple[TaskSpec, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected a list of tasks")
    out = tuple(_task(root, item, f"{where}[{i}]") for i, item in enumerate(items))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: task names must be unique, got {names}")
    return out


def _seen_and_unseen(root: Path, data: Any) -> tuple[tuple[TaskSpec, ...], tuple[TaskSpec, ...]]:
    tasks = _check_keys("tasks", data, {"seen", "unseen"}, {"seen"})
    seen, unseen = _tasks(root, tasks["seen"], "tasks.seen"), _tasks(root, tasks.get("unseen"), "tasks.unseen")
    if not seen:
        raise ConfigError("tasks.seen: at least one task drives the search")
    clash = {t.name for t in seen} & {t.name for t in unseen}
    if clash:
        raise ConfigError(f"tasks: {sorted(clash)} listed as both seen and unseen")
    return seen, unseen


def _base(root: Path, base: Any) -> str:
    """A folder (resolved against ``root``) or, when no such folder exists, a Hugging Face hub id."""
    if not isinstance(base, str) or not base:
        raise ConfigError("base: expected a hub id or a folder")
    base_path = (root / base).expanduser()
    if base_path.is_dir():
        return str(base_path)
    if base.startswith((".", "/", "~")) or base.count("/") > 1 or base.endswith("/"):
        raise ConfigError(f"base: no such folder {base_path} (and {base!r} is not a hub id like 'org/model')")
    return base  # a hub id: loaded (or refused, offline) by transformers


def _tokenizer(root: Path, tokenizer: Any) -> str | None:
    if tokenizer is not None and (root / tokenizer).is_dir():
        return str(root / tokenizer)
    return tokenizer


def _experts(root: Path, raw: Any) -> tuple[ExpertSpec, ...]:
    if not isinstance(raw, list) or len(raw) < 1:
        raise ConfigError("experts: expected a non-empty list of folders")
    experts = []
    for i, item in enumerate(raw):
        item = {"path": item} if isinstance(item, str) else item
        item = _check_keys(f"experts[{i}]", item, {"path", "name", "kind"}, {"path"})
        path = _path(root, item["path"], f"experts[{i}].path")
        if not Path(path).is_dir():
            raise ConfigError(f"experts[{i}].path: no such folder {path}")
        kind = item.get("kind", "auto")
        if kind not in ("auto", "lora", "dense"):
            raise ConfigError(f"experts[{i}].kind must be auto, lora or dense, got {kind!r}")
        experts.append(ExpertSpec(path=path, name=str(item.get("name") or Path(path).name), kind=kind))
    names = [e.name for e in experts]
    if len(set(names)) != len(names):
        raise ConfigError(f"experts: names must be unique, got {names}")
    return tuple(experts)


def _method(method: Any, n_experts: int) -> tuple[str, dict[str, Any], MergeMethod]:
    """A merge method name, or a mapping with ``name`` and the method's parameters (each checked by name): ours, or
    any other name from mergekit's registry (``llm_merge.merges.mergekit_methods``). Also the method built from them."""
    from llm_merge.merges import get_method, validate_method

    options: dict[str, Any] = {}
    if isinstance(method, dict):
        options = dict(method)
        method = options.pop("name", None)
    if not isinstance(method, str):
        raise ConfigError(f"method: expected a method name or a mapping with name:, got {method!r}")
    try:
        validate_method(method, options, n_experts)
        return method, options, get_method(method, **options)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _check_coefficient_range(merge: MergeMethod, spec: OptimizerSpec, simplex: bool, n: int) -> None:
    """The method merges a small tensor at the ends of the searched range (the optimizer's bounds, or the simplex's
    uniform point), so that coefficients it rejects (a mergekit method's) are found before anything loads."""
    values: list[float] = [1.0 / n]
    if not simplex:
        import numpy as np

        try:
            box = np.asarray(spec.options.get("bounds", (-1.0, 1.0)), dtype=float).reshape(-1, 2)
            values = [float(box[:, 0].min()), float(box[:, 1].max())]
        except (TypeError, ValueError):
            return  # the optimizer reports bounds it cannot read
    try:
        merge.check_coefficients(n, values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _optimizer(data: Any) -> OptimizerSpec:
    from evogm_opt import registry

    spec = OptimizerSpec(**_check_keys("optimizer", data, {"name", "budget", "seed", "popsize", "options"}))
    if spec.name not in registry.names():
        raise ConfigError(f"optimizer.name: {spec.name!r} is not one of {registry.names()}")
    if not isinstance(spec.budget, int) or spec.budget < 1:
        raise ConfigError(f"optimizer.budget must be a positive integer, got {spec.budget!r}")
    if not isinstance(spec.seed, int):
        raise ConfigError(f"optimizer.seed must be an integer, got {spec.seed!r}")
    if spec.popsize is not None and (not isinstance(spec.popsize, int) or spec.popsize < 2):
        raise ConfigError(f"optimizer.popsize must be an integer >= 2, got {spec.popsize!r}")
    if not isinstance(spec.options, dict):
        raise ConfigError("optimizer.options must be a mapping of constructor arguments")
    return spec


def _check_optimizer_builds(spec: OptimizerSpec, dim: int, merge: MergeMethod, method: str) -> None:
    """Build the optimizer once (cheap: no network is trained before the first ask), so a preset or option typo
    is a config error now, not an exception after the model has loaded."""
    from evogm_opt import registry

    kwargs: dict[str, Any] = {"seed": spec.seed, "maximize": True, **spec.options}
    if spec.popsize is not None:
        kwargs["popsize"] = spec.popsize
    try:
        opt = registry.create(spec.name, max(2, dim), **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"optimizer ({spec.name}, options {sorted(spec.options)}): {exc}") from exc
    problem = rebase_bounds_problem(opt, merge, method)
    if problem is not None:
        raise ConfigError(problem)


def rebase_bounds_problem(opt: Any, merge: MergeMethod, method: str) -> str | None:
    """Why ``opt``'s bounds cannot drive this merge (``None``: they can). Under EvoGM a nonlinear merge is scored at
    the optimizer's coordinates in [-1, 1] (what its basis shifts rebuild experts from), not at the bounded x, so
    any other box would search values the user did not ask for."""
    import numpy as np

    from evogm_opt import GenerativeOptimizer

    if merge.linear or not isinstance(opt, GenerativeOptimizer):
        return None
    if np.all(opt.box.lower == -1.0) and np.all(opt.box.upper == 1.0):
        return None
    return (
        f"optimizer.options.bounds: {method} is a nonlinear merge, which EvoGM searches in its basis coordinates "
        "over [-1, 1] (a basis shift makes whole merges the new experts), so other bounds are not supported with "
        "evogm; for a bounded coefficient (e.g. a density) use cmaes, sep-cmaes, pso-merging or random"
    )


def _stopping(data: Any) -> StoppingSpec:
    from evogm_opt.stopping import StoppingRules

    stop = _check_keys("stopping", data or {}, {"patience", "min_improvement", "max_seconds"})
    try:
        StoppingRules(None, stop.get("max_seconds"), stop.get("patience"), float(stop.get("min_improvement", 0.0)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"stopping: {exc}") from exc
    return StoppingSpec(stop.get("patience"), float(stop.get("min_improvement", 0.0)), stop.get("max_seconds"))


def _layout(data: Any) -> tuple[str, int]:
    """(layout name, decoder-layer groups)."""
    layout = {"name": data} if isinstance(data, str) else data
    layout = _check_keys("layout", layout, {"name", "groups"}, {"name"})
    if layout["name"] not in _LAYOUTS:
        raise ConfigError(f"layout: {layout['name']!r} is not per_expert, per_layer_group or per_module_type")
    groups = layout.get("groups", 4)
    if not isinstance(groups, int) or groups < 1 or ("groups" in layout and layout["name"] != "per_layer_group"):
        raise ConfigError(f"layout.groups: a positive integer, for per_layer_group only (got {groups!r})")
    return layout["name"], groups


def _simplex(data: Any) -> tuple[bool, float]:
    """(simplex on, sharpness): ``true``, ``false`` or a mapping with ``sharpness``."""
    simplex = {"sharpness": 4.0} if data is True else ({} if data is False else data)
    simplex = _check_keys("simplex", simplex, {"sharpness"})
    sharpness = simplex.get("sharpness", 4.0)
    if not isinstance(sharpness, (int, float)) or not sharpness > 0:
        raise ConfigError(f"simplex.sharpness must be a number > 0, got {sharpness!r}")
    return bool(simplex), float(sharpness)


def _dtype_and_batch_size(data: dict[str, Any]) -> tuple[str, int]:
    dtype = data.get("dtype", "bfloat16")
    if dtype not in DTYPE_NAMES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPE_NAMES)}, got {dtype!r}")
    batch_size = data.get("batch_size", 32)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return dtype, batch_size


def _eval_path_name(eval_path: Any) -> str:
    if eval_path not in ("auto", "rebuild", "batched"):
        raise ConfigError(f"eval_path must be auto, rebuild or batched, got {eval_path!r}")
    return eval_path


def _eval_path(eval_path: str, merge: MergeMethod) -> str:
    if eval_path == "batched" and not merge.linear:
        raise ConfigError(
            "eval_path: batched needs a linear merge (task_arithmetic without normalize or lambda ≠ 1) and LoRA experts"
        )
    return eval_path


def _threads(value: Any) -> int | None:
    """A positive count, or ``auto`` (``None``: torch's own default, one thread per core), which must be asked for:
    quiet, it was about 5 % faster; beside other work, up to 11× slower. Empty (``threads:``): the default."""
    if value is None:
        return DEFAULT_THREADS
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"threads must be a positive integer or auto, got {value!r}")
    return value


def _model_type(value: Any, base: str) -> str:
    """``auto`` (the base's config decides), ``causal`` or ``seq2seq``; an explicit one is checked now against a
    local base's ``config.json`` (a hub id's config is read, and checked, when the base loads)."""
    if value not in MODEL_TYPES:
        classes = ", ".join(f"{k}: {v}" for k, v in AUTO_CLASSES.items())
        raise ConfigError(
            f"model_type must be one of {', '.join(MODEL_TYPES)}, got {value!r} (the transformers class that loads "
            f"the base — {classes}; auto reads is_encoder_decoder from its config, whose own model_type, such as "
            "t5 or llama, is not set here)"
        )
    config = Path(base) / "config.json"
    if value != "auto" and config.is_file():
        try:
            data = json.loads(config.read_text())
        except (OSError, json.JSONDecodeError):
            return value  # transformers will say what is wrong with it when the base loads
        if isinstance(data, dict):
            try:
                base_model_type(bool(data.get("is_encoder_decoder", False)), value, base)
            except BaseModelTypeError as exc:
                raise ConfigError(str(exc)) from exc
    return value


def _on_other_base(value: Any) -> str:
    if value not in ON_OTHER_BASE:
        raise ConfigError(f"on_other_base must be one of {', '.join(ON_OTHER_BASE)}, got {value!r}")
    return value


_MERGEKIT_KEYS = {"merge_method", "models", "slices", "base_model"}


def _mergekit_model(item: Any) -> str:
    """A mergekit model reference as our expert: ``BASE+LORA`` is the LoRA folder, else the model itself."""
    model = item.get("model", "?") if isinstance(item, dict) else item
    return str(model).rsplit("+", 1)[-1]


def _shared_model_parameter(models: list[Any], key: str) -> Any:
    """A per-model mergekit parameter that every model sets to the same scalar (``None`` otherwise)."""
    values = [(m.get("parameters") or {}).get(key) if isinstance(m, dict) else None for m in models]
    same = values and values[0] is not None and all(v == values[0] for v in values)
    return values[0] if same and isinstance(values[0], (int, float, bool, str)) else None


def _refuse_mergekit_recipe(data: dict[str, Any]) -> None:
    """A mergekit recipe given as our config: one line saying so, with the same merge in our schema."""
    if "merge_method" not in data and not ({"models", "slices"} & set(data) and "base" not in data):
        return
    models = data.get("models") if isinstance(data.get("models"), list) else []
    params = dict(data.get("parameters") or {})
    per_model = {k for m in models if isinstance(m, dict) for k in (m.get("parameters") or {})} - {"weight"}
    for key in sorted(per_model):  # density, epsilon, gamma, … the same for every model: the method's parameter
        if _shared_model_parameter(models, key) is not None:
            params[key] = _shared_model_parameter(models, key)
    method = ", ".join(
        [f"name: {data.get('merge_method', 'task_arithmetic')}", *(f"{k}: {v}" for k, v in params.items())]
    )
    experts = ", ".join(_mergekit_model(m) for m in models) or "EXPERT_FOLDERS"
    raise ConfigError(
        "config: this is a mergekit recipe (merge_method, models, base_model), not an evogm-opt merge config; in "
        f"ours it reads  base: {data.get('base_model', 'BASE')}  experts: [{experts}]  method: {{{method}}}  "
        "tasks: {seen: [{name: ..., val: ...jsonl}]}  — the models' weights are not copied: they become the "
        "searched coefficients, one per expert (schema: docs/llm-merge.md)"
    )


def parse_config(data: Any, root: Path) -> MergeRunConfig:
    """Validate a loaded YAML mapping (``root``: the folder relative paths are resolved against)."""
    if isinstance(data, dict):
        _refuse_mergekit_recipe(data)
    data = _check_keys("config", data, _TOP_KEYS, {"base", "experts", "tasks"})
    # first what needs neither torch nor cma (a typo is reported in well under a second) ...
    base = _base(root, data["base"])
    model_type = _model_type(data.get("model_type", "auto"), base)
    experts = _experts(root, data["experts"])
    seen, unseen = _seen_and_unseen(root, data["tasks"])
    spec = _optimizer(data.get("optimizer", {}))
    dtype, batch_size = _dtype_and_batch_size(data)
    stopping = _stopping(data.get("stopping"))
    layout, groups = _layout(data.get("layout", "per_expert"))
    simplex, sharpness = _simplex(data.get("simplex", False))
    eval_path = _eval_path_name(data.get("eval_path", "auto"))
    threads = _threads(data.get("threads", DEFAULT_THREADS))
    on_other_base = _on_other_base(data.get("on_other_base", "warn"))
    # ... then what builds the merge method (torch) and the optimizer (torch for EvoGM, cma for CMA-ES)
    method, options, merge = _method(data.get("method", "task_arithmetic"), len(experts))
    if layout == "per_expert":  # other layouts' dims need the model's layers; their optimizer is built at load
        _check_optimizer_builds(spec, len(experts), merge, method)
    _check_coefficient_range(merge, spec, simplex, len(experts))
    eval_path = _eval_path(eval_path, merge)
    return MergeRunConfig(
        base=base,
        tokenizer=_tokenizer(root, data.get("tokenizer")),
        model_type=model_type,
        experts=experts,
        seen=seen,
        unseen=unseen,
        output=_path(root, data.get("output", "merge-run"), "output"),
        dtype=dtype,
        device=str(data.get("device", "auto")),
        method=method,
        method_options=options,
        optimizer=spec,
        stopping=stopping,
        layout=layout,
        layout_groups=groups,
        simplex=simplex,
        simplex_sharpness=sharpness,
        batch_size=batch_size,
        eval_path=eval_path,
        baselines=bool(data.get("baselines", True)),
        save_model=bool(data.get("save_model", True)),
        threads=threads,
        on_other_base=on_other_base,
    )


def load_config(path: str | Path) -> MergeRunConfig:
    """Read and validate ``path``; every mistake is a one-line :class:`ConfigError`."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    except OSError as exc:  # not readable by this user, a folder, gone since the check
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error(path, exc)) from exc
    return parse_config(data, path.resolve().parent)


def _yaml_error(path: Path, exc: Exception) -> str:
    """One line, ``FILE:LINE:COLUMN: invalid YAML: what`` (1-based, as editors count), instead of PyYAML's
    multi-line message with a caret drawing."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    return f"{where}: invalid YAML: {problem}" + (f" ({context})" if context else "")
