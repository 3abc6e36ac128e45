"""``evogm-opt merge CONFIG.yaml``: the file validated against :mod:`llm_merge.run.schema` (every mistake one line
naming the key and what it may be), then resolved into the :class:`MergeRunConfig` a run records.

First what needs neither torch nor cma (a typo is reported in well under a second), then what builds the merge
method (torch) and the optimizer (torch for EvoGM, cma for CMA-ES), so that a method parameter or an optimizer
option is refused before the model loads. Relative paths are resolved against the YAML file's folder, so a config
and its data can move together; a ``base`` that is not an existing folder is a Hugging Face hub id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from llm_merge.run.recipe_refusal import mergekit_recipe_message
from llm_merge.run.schema import (
    Complete,
    ExpertSpec,
    FidelitySpec,
    OptimizerSpec,
    RunSchema,
    SimplexChoice,
    StoppingSpec,
    TaskSpec,
)

if TYPE_CHECKING:
    from llm_merge.merges.base import MergeMethod


class ConfigError(ValueError):
    """A merge config that does not follow the schema."""


@dataclass(frozen=True)
class MergeRunConfig:
    """The config resolved (paths absolute, short forms expanded): what ``run.json`` records and the fingerprint
    hashes. Flat, as 0.1 wrote it, so that run folders written before keep their fingerprint.

    No field has a default: the defaults are the schema's (:class:`RunSchema`), and :func:`_resolved`, its one
    constructor, passes every field from a validated schema."""

    base: str
    experts: tuple[ExpertSpec, ...]
    seen: tuple[TaskSpec, ...]
    output: str
    unseen: tuple[TaskSpec, ...]
    tokenizer: str | None
    model_type: str
    dtype: str
    device: str
    method: str
    method_options: dict[str, Any]
    optimizer: OptimizerSpec
    stopping: StoppingSpec
    layout: str
    layout_groups: int
    simplex: bool
    simplex_sharpness: float  # recorded (and hashed) even with the simplex off: the schema's default then
    batch_size: int
    eval_path: str
    baselines: bool
    save_model: bool
    threads: int | None
    on_other_base: str
    fidelity: FidelitySpec | None  # None (off): left out of the record, so that runs without it keep their bytes

    def fingerprint(self) -> str:
        """Hash of everything that changes which points are evaluated and what they score.

        The budget and the output folder are left out: a run may be resumed with a larger budget or moved.
        """
        data = self.to_dict()
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
        """The record ``run.json`` keeps (and the fingerprint hashes). ``fidelity`` only where it is on: a run
        without it records, and fingerprints, exactly what it did before the key existed; one with it has every
        setting (defaults included) in its fingerprint, so a resume with other fidelity settings is refused."""
        data = {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        if self.fidelity is None:
            data.pop("fidelity")
        return data


def plain(value: Any) -> Any:
    """Plain data: a spec as the mapping of its fields (a task's ``lm_eval`` as the keys the config set)."""
    if isinstance(value, TaskSpec):
        return {**plain(dict(value)), "lm_eval": value.lm_eval_options()}
    if isinstance(value, BaseModel):
        return plain(dict(value))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def _where(loc: tuple[Any, ...]) -> str:
    """``("experts", 1, "path")`` as ``experts[1].path``; the file itself is ``config``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "config"


def _section(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The schema model at ``loc`` (to list its keys and read its fields' descriptions)."""
    model: Any = RunSchema
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) if isinstance(model, type) else None
        if info is None:
            return None
        annotation = info.annotation
        found = [a for a in (annotation, *getattr(annotation, "__args__", ())) if _is_model(a)]
        model = found[0] if found else None
    return model


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _description(loc: tuple[Any, ...]) -> str | None:
    """What the key at ``loc`` must be, as its field declares (``None``: not declared)."""
    names = [i for i, part in enumerate(loc) if isinstance(part, str)]
    if not names:
        return None
    parent = _section(loc[: names[-1]])
    info = parent.model_fields.get(loc[names[-1]]) if parent is not None else None
    return None if info is None else info.description


def _keys_message(loc: tuple[Any, ...], errors: list[dict[str, Any]]) -> str | None:
    """Unknown and missing keys of the mapping at ``loc``, as one line (``None``: there are none)."""
    here = [e for e in errors if e["loc"][:-1] == loc]
    unknown = sorted(str(e["loc"][-1]) for e in here if e["type"] == "extra_forbidden")
    if unknown:
        section = _section(loc)
        allowed = sorted(section.model_fields) if section is not None else []
        return f"{_where(loc)}: unknown keys {unknown}; allowed: {allowed}"
    missing = sorted(str(e["loc"][-1]) for e in here if e["type"] == "missing")
    return f"{_where(loc)}: missing keys {missing}" if missing else None


def one_line(exc: ValidationError) -> str:
    """The first mistake pydantic found, in the schema's words: a mapping's unknown or missing keys before its
    values (the shallowest mapping first), a validator's own message, or what the key must be."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    for depth in range(len(first["loc"])):
        message = _keys_message(tuple(first["loc"][:depth]), errors)
        if message is not None:
            return message
    where, value = _where(first["loc"]), first.get("input")
    error = (first.get("ctx") or {}).get("error")
    if isinstance(error, Complete):
        return str(error)
    if first["type"] == "value_error":
        text = str(error)
        return f"{where} {text}" if text.startswith("must ") else f"{where}: {text}"
    if first["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return f"{where}: expected a mapping, got {type(value).__name__}"
    expected = _description(first["loc"])
    if expected is None:
        return f"{where}: {first['msg']}, got {value!r}"
    return f"{where} must be {expected}, got {value!r}"


def parse_config(data: Any, root: Path) -> MergeRunConfig:
    """Validate a loaded YAML mapping (``root``: the folder relative paths are resolved against)."""
    recipe = mergekit_recipe_message(data) if isinstance(data, dict) else None
    if recipe is not None:
        raise ConfigError(recipe)
    try:
        schema = RunSchema.model_validate(data, context={"root": root})
    except ValidationError as exc:
        raise ConfigError(one_line(exc)) from None
    cfg = _resolved(schema)
    merge = _method(cfg.method, cfg.method_options, len(cfg.experts))
    if cfg.layout == "per_expert":  # other layouts' dims need the model's layers; their optimizer is built at load
        budget = cfg.optimizer.budget if cfg.fidelity is None else None  # as the run builds it (search.py)
        _check_optimizer_builds(cfg.optimizer, len(cfg.experts), merge, cfg.method, budget)
    _check_coefficient_range(merge, cfg.optimizer, cfg.simplex, len(cfg.experts))
    _check_eval_path(cfg.eval_path, merge)
    _check_fidelity(cfg, merge)
    return cfg


def _check_fidelity(cfg: MergeRunConfig, merge: MergeMethod) -> None:
    """What fidelity cannot do, refused before the model loads: a seen lm-eval task whose score cannot be extended
    document by document (:func:`_lm_eval_fidelity_problem`), a nonlinear merge under EvoGM's basis shifts
    (scored at coordinates the scheduler does not carry) and the sequential shape's one-candidate generations."""
    if cfg.fidelity is None:
        return
    for spec in cfg.seen:
        problem = _lm_eval_fidelity_problem(spec) if spec.lm_eval is not None else None
        if problem is not None:
            raise ConfigError(problem)
    if cfg.optimizer.name == "evogm-sequential" and cfg.optimizer.popsize in (None, 1):
        raise ConfigError(
            "fidelity: successive halving promotes the best of a generation, and evogm-sequential asks one "
            "candidate per generation; use name: evogm (its population shape with fidelity), give popsize, or "
            "fidelity: off"
        )
    if not merge.linear and cfg.optimizer.name in ("evogm", "evogm-paper"):
        raise ConfigError(
            f"fidelity: not supported with {cfg.method} under {cfg.optimizer.name} (a nonlinear merge is scored at "
            "EvoGM's basis coordinates, which the fidelity scheduler does not carry); use task_arithmetic, another "
            "optimizer (cmaes, sep-cmaes, pso-merging, random), or fidelity: off"
        )


def _lm_eval_fidelity_problem(spec: TaskSpec) -> str | None:
    """Why the seen lm-eval task ``spec`` cannot be scored on prefixes (``LmEvalTask.fidelity_problem``; an
    unknown task or a missing ``lm-eval`` too). Builds lm-eval's TaskManager and the task (its dataset, which the
    run loads anyway), no model."""
    from llm_merge.tasks.jsonl import TaskError
    from llm_merge.tasks.lm_eval_tasks import LmEvalTask

    try:
        return LmEvalTask(spec.name, spec.val, **spec.lm_eval_options()).fidelity_problem()
    except TaskError as exc:
        return str(exc)
    except Exception as exc:  # the harness or its dataset: said in one line, as every config mistake is
        first = (str(exc).strip().splitlines() or [""])[0]
        where = f"lm-eval task {spec.val!r} of {spec.name!r}"
        return f"fidelity: {where} could not be loaded to check it ({type(exc).__name__}: {first})"


def _resolved(schema: RunSchema) -> MergeRunConfig:
    """The schema's sections flattened into the record 0.1 wrote."""
    return MergeRunConfig(
        base=schema.base,
        tokenizer=schema.tokenizer,
        model_type=schema.model_type,
        experts=tuple(schema.experts),
        seen=tuple(schema.tasks.seen),
        unseen=tuple(schema.tasks.unseen),
        output=schema.output,
        dtype=schema.dtype,
        device=schema.device,
        method=schema.method.name,
        method_options=dict(schema.method.options),
        optimizer=schema.optimizer,
        stopping=schema.stopping,
        layout=schema.layout.name,
        layout_groups=schema.layout.groups,
        simplex=schema.simplex is not None,
        simplex_sharpness=(SimplexChoice() if schema.simplex is None else schema.simplex).sharpness,
        batch_size=schema.batch_size,
        eval_path=schema.eval_path,
        baselines=schema.baselines,
        save_model=schema.save_model,
        threads=schema.threads,
        on_other_base=schema.on_other_base,
        fidelity=schema.fidelity,
    )


def _method(method: str, options: dict[str, Any], n_experts: int) -> MergeMethod:
    """The merge method built from its name and parameters (each checked by the method): ours, or any other name
    from mergekit's registry (``llm_merge.merges.mergekit_methods``)."""
    from llm_merge.merges import get_method, validate_method

    try:
        validate_method(method, options, n_experts)
        return get_method(method, **options)
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


def _check_optimizer_builds(
    spec: OptimizerSpec, dim: int, merge: MergeMethod, method: str, max_evals: int | None
) -> None:
    """Build the optimizer once (cheap: no network is trained before the first ask), so a preset or option typo
    is a config error now, not an exception after the model has loaded. ``max_evals``: the budget the run gives it
    (``"evogm"``'s rule reads it), ``None`` with ``fidelity:``."""
    from evogm_opt import registry

    kwargs: dict[str, Any] = {"seed": spec.seed, "maximize": True, **spec.options}
    if spec.popsize is not None:
        kwargs["popsize"] = spec.popsize
    if max_evals is not None:
        kwargs.setdefault("max_evals", max_evals)
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


def _check_eval_path(eval_path: str, merge: MergeMethod) -> None:
    if eval_path == "batched" and not merge.linear:
        raise ConfigError(
            "eval_path: batched needs a linear merge (task_arithmetic without normalize or lambda ≠ 1) and LoRA experts"
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
