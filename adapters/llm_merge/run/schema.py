"""The ``evogm-opt merge CONFIG.yaml`` schema, declared once: each key as a pydantic field (its type, default, allowed
values, and the words an error uses for them), each section a model that forbids keys it does not declare.

Parsing is :func:`llm_merge.run.config.parse_config`, which turns pydantic's errors into one line each. Paths are
resolved against the YAML file's folder, given as the validation context ``{"root": Path}``; without a context
(a spec built in code, e.g. by ``--rebuild`` from its record) values are only type-checked, never resolved.
Nothing here imports torch: a typo is reported before anything heavy loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from llm_merge.model.names import (
    AUTO_CLASSES,
    DTYPE_NAMES,
    LAYOUTS,
    MODEL_TYPES,
    ON_OTHER_BASE,
    BaseModelTypeError,
    base_model_type,
)

# One torch thread unless the config says otherwise. Measured on the demo's model on this project's 2-core machine
# (docs/performance.md): quiet, 0.066–0.069 s per evaluation whatever the count; beside other work, torch's default
# (2 threads here) took 0.16–1.04 s against 0.09–0.11 s on one, since its threads spin waiting for each other.
DEFAULT_THREADS = 1
# Registry names removed in 0.2.0, now bench peers (benchmarks/research/variants.py): the paper preset's settings
# that make the same optimizer in a merge (tests/test_llm_merge_run.py checks them against the bench's configs).
REMOVED_OPTIMIZERS = {
    "evogm-paper-no-rounds": {"n_rounds": 1, "iterations_per_round": 6},
    "evogm-paper-single-generator": {"generator": {"dual": False}},
}


class Complete(ValueError):
    """A validator's message that already names its key (``parse_config`` prints it as it is)."""


def default_of(model: type[BaseModel], name: str) -> Any:
    """The default the schema declares for ``model``'s field ``name`` (a default factory called): what a record
    written without that key meant."""
    return model.model_fields[name].get_default(call_default_factory=True)


def _one_of(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}"


def _root(info: ValidationInfo) -> Path | None:
    return (info.context or {}).get("root")


def _text(value: Any) -> Any:
    return value if value is None else str(value)


def resolve_path(root: Path, value: Any) -> str:
    """``value`` (a non-empty string) relative to ``root``, ``~`` expanded."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a path, got {value!r}")
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (root / path))


class Section(BaseModel):
    """A mapping of the config: a key it does not declare is an error naming the allowed ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ExpertSpec(Section):
    """``experts:`` entry: a folder, or ``{path, name, kind}``."""

    path: Annotated[str, Field(description="a folder")]
    name: Annotated[str | None, BeforeValidator(_text)] = None  # default: the folder's name
    kind: Annotated[Literal["auto", "lora", "dense"], Field(description="auto, lora or dense")] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _folder_alone(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @field_validator("path")
    @classmethod
    def _existing_folder(cls, value: str, info: ValidationInfo) -> str:
        root = _root(info)
        if root is None:
            return value
        path = resolve_path(root, value)
        if not Path(path).is_dir():
            raise ValueError(f"no such folder {path}")
        return path

    @model_validator(mode="after")
    def _named(self) -> ExpertSpec:
        return self if self.name else self.model_copy(update={"name": Path(self.path).name})


class LmEvalOptions(Section):
    """``lm_eval:`` of a task (``true`` for none): its ``val``/``test`` are lm-evaluation-harness task names."""

    metric: str | None = None
    limit: Any = None  # a count, or a fraction as lm-eval takes it
    include_path: str | None = None
    num_fewshot: Annotated[int | None, Field(strict=True, description="an integer")] = None

    @field_validator("include_path")
    @classmethod
    def _resolved(cls, value: str | None, info: ValidationInfo) -> str | None:
        root = _root(info)
        return value if value is None or root is None else resolve_path(root, value)


class TaskSpec(Section):
    """``tasks.seen[i]`` / ``tasks.unseen[i]``: a JSONL file per split, or (``lm_eval``) an lm-eval task name."""

    name: Annotated[str, BeforeValidator(_text)]
    # before val and test: whether they are files is decided by it
    lm_eval: LmEvalOptions | None = None
    val: str
    test: str | None = None
    weight: Annotated[float, Field(gt=0, strict=True, description="a positive number")] = 1.0
    max_new_tokens: Annotated[int, Field(ge=1, strict=True, description="a positive integer")] = 16

    @field_validator("lm_eval", mode="before")
    @classmethod
    def _true_is_defaults(cls, value: Any) -> Any:
        return {} if value is True else value

    @field_validator("val", "test", mode="before")
    @classmethod
    def _source(cls, value: Any, info: ValidationInfo) -> Any:
        root = _root(info)
        if value is None or root is None:
            return value
        if info.data.get("lm_eval") is not None:
            return str(value)
        path = resolve_path(root, value)
        if not Path(path).is_file():
            raise ValueError(f"no such file {path}")
        return path

    def lm_eval_options(self) -> dict[str, Any] | None:
        """The ``lm_eval`` keys the config set (what the run records)."""
        return None if self.lm_eval is None else self.lm_eval.model_dump(exclude_unset=True)


def _task_list(value: Any) -> Any:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("expected a list of tasks")
    return value


def _unique_names(tasks: list[TaskSpec]) -> list[TaskSpec]:
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique, got {names}")
    return tasks


class TaskLists(Section):
    """``tasks:``: ``seen`` drive the search (the weighted mean of their validation scores), ``unseen`` are only
    reported."""

    seen: list[TaskSpec]
    unseen: list[TaskSpec] = []

    @field_validator("seen", "unseen", mode="before")
    @classmethod
    def _a_list(cls, value: Any) -> Any:
        return _task_list(value)

    @field_validator("seen")
    @classmethod
    def _some_seen(cls, value: list[TaskSpec]) -> list[TaskSpec]:
        if not value:
            raise ValueError("at least one task drives the search")
        return _unique_names(value)

    @field_validator("unseen")
    @classmethod
    def _unique_unseen(cls, value: list[TaskSpec]) -> list[TaskSpec]:
        return _unique_names(value)

    @model_validator(mode="after")
    def _apart(self) -> TaskLists:
        clash = {t.name for t in self.seen} & {t.name for t in self.unseen}
        if clash:
            raise ValueError(f"{sorted(clash)} listed as both seen and unseen")
        return self


class OptimizerSpec(Section):
    """``optimizer:``: a name of ``evogm_opt.registry`` and its constructor's settings."""

    name: str = "evogm"
    budget: Annotated[int, Field(ge=1, strict=True, description="a positive integer")] = 100  # evaluations
    seed: Annotated[int, Field(strict=True, description="an integer")] = 0
    popsize: Annotated[int | None, Field(ge=2, strict=True, description="an integer >= 2")] = None
    # further constructor arguments (preset, config, bounds, ...)
    options: Annotated[dict[str, Any], Field(description="a mapping of constructor arguments")] = {}

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        from evogm_opt import registry

        if value not in registry.names():
            raise ValueError(f"{value!r} is not one of {registry.names()}{_removed_hint(value)}")
        return value


def _removed_hint(name: str) -> str:
    """For a registry name removed in 0.2.0: where it went, and the options that build it in a merge."""
    if name not in REMOVED_OPTIMIZERS:
        return ""
    config = json.dumps(REMOVED_OPTIMIZERS[name]).replace('"', "")  # as YAML's flow style writes it
    return (
        f"; since 0.2.0 {name} is a bench variant (evogm-opt bench --optimizers {name}); in a merge, write "
        f"optimizer: {{name: evogm, options: {{preset: paper, config: {config}}}}}"
    )


class StoppingSpec(Section):
    """``stopping:`` (the budget always applies); the values are checked by the core's ``StoppingRules``."""

    patience: Any = None  # generations without an improvement larger than min_improvement
    min_improvement: Annotated[float, Field(strict=True, description="a number")] = 0.0  # validation-score units
    max_seconds: Any = None  # search wall-clock, summed over resumed invocations

    @model_validator(mode="after")
    def _rules(self) -> StoppingSpec:
        from evogm_opt.stopping import StoppingRules

        try:
            StoppingRules(None, self.max_seconds, self.patience, self.min_improvement)
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        return self


class FidelitySpec(Section):
    """``fidelity:`` as a mapping (``off``, the default, is none): successive halving over nested prefixes of each
    seen task's validation examples (:mod:`llm_merge.run.fidelity`, ``evogm_opt.fidelity.FidelityScheduler``)."""

    # no candidate is scored on fewer examples of any seen task (a task with fewer is scored whole at every rung)
    min_examples: Annotated[int, Field(ge=1, strict=True, description="a positive integer (examples per task)")]
    # the best 1/eta of a rung go on to eta times the examples
    eta: Annotated[int, Field(ge=2, strict=True, description="an integer >= 2")] = 3
    # seeds the one fixed permutation of each task's examples whose prefixes are scored
    seed: Annotated[int, Field(strict=True, description="an integer")] = 0


class MethodChoice(BaseModel):
    """``method:``: a name, or a mapping with ``name`` and the method's parameters (checked by the method itself,
    once the merge registry is loaded)."""

    model_config = ConfigDict(frozen=True)

    name: str
    options: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _name_and_parameters(cls, data: Any) -> Any:
        options = dict(data) if isinstance(data, dict) else {}
        name = options.pop("name", None) if isinstance(data, dict) else data
        if not isinstance(name, str):
            raise ValueError(f"expected a method name or a mapping with name:, got {name!r}")
        return {"name": name, "options": options}


class LayoutChoice(Section):
    """``layout:``: a name, or ``{name, groups}`` (``groups``: decoder-layer groups, ``per_layer_group`` only)."""

    name: Annotated[Literal[LAYOUTS], Field(description=_one_of(LAYOUTS))]
    groups: Annotated[int, Field(ge=1, strict=True, description="a positive integer")] = 4

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _groups_for_groups_only(self) -> LayoutChoice:
        if "groups" in self.model_fields_set and self.name != "per_layer_group":
            raise Complete(f"layout.groups: for per_layer_group only (got groups: {self.groups} with {self.name})")
        return self


class SimplexChoice(Section):
    """``simplex:`` as a mapping: per group, weights = softmax(sharpness · z)."""

    sharpness: Annotated[float, Field(gt=0, strict=True, description="a number > 0")] = 4.0


def _model_type_message(value: Any) -> str:
    classes = ", ".join(f"{k}: {v}" for k, v in AUTO_CLASSES.items())
    return (
        f"must be one of {', '.join(MODEL_TYPES)}, got {value!r} (the transformers class that loads the base — "
        f"{classes}; auto reads is_encoder_decoder from its config, whose own model_type, such as t5 or llama, is "
        "not set here)"
    )


class RunSchema(Section):
    """The whole file. The order of the fields is the order mistakes are reported in: the cheap ones first."""

    # a folder (relative to the config) or, when no such folder exists, a Hugging Face hub id
    base: Annotated[str, Field(description="a hub id or a folder")]
    model_type: str = "auto"  # auto | causal | seq2seq: the transformers class of the base (model.loading)
    experts: list[ExpertSpec]
    tasks: TaskLists
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    dtype: Annotated[Literal[DTYPE_NAMES], Field(description=f"one of {sorted(DTYPE_NAMES)}")] = "bfloat16"
    batch_size: Annotated[int, Field(ge=1, strict=True, description="a positive integer")] = 32
    stopping: StoppingSpec = Field(default_factory=StoppingSpec)
    fidelity: FidelitySpec | None = None  # None (off): every candidate scored on every validation example
    layout: LayoutChoice = Field(default_factory=lambda: LayoutChoice(name="per_expert"))
    simplex: SimplexChoice | None = None  # None: λ as searched; true or a mapping: per-group softmax weights
    eval_path: Annotated[Literal["auto", "rebuild", "batched"], Field(description="auto, rebuild or batched")] = "auto"
    # torch threads for the model's work; None (``auto``): torch's own default, one thread per core
    threads: int | None = DEFAULT_THREADS
    # a LoRA adapter trained on another base model
    on_other_base: Annotated[Literal[ON_OTHER_BASE], Field(description=f"one of {', '.join(ON_OTHER_BASE)}")] = "warn"
    method: MethodChoice = Field(default_factory=lambda: MethodChoice(name="task_arithmetic"))
    tokenizer: str | None = None
    device: Annotated[str, BeforeValidator(str)] = "auto"
    baselines: Annotated[bool, Field(description="true or false")] = True
    save_model: Annotated[bool, Field(description="true or false")] = True
    output: str = "merge-run"

    @field_validator("base")
    @classmethod
    def _folder_or_hub_id(cls, base: Any, info: ValidationInfo) -> str:
        root = _root(info) or Path()
        if not base:
            raise ValueError("expected a hub id or a folder")
        base_path = (root / base).expanduser()
        if base_path.is_dir():
            return str(base_path)
        if base.startswith((".", "/", "~")) or base.count("/") > 1 or base.endswith("/"):
            raise ValueError(f"no such folder {base_path} (and {base!r} is not a hub id like 'org/model')")
        return base  # a hub id: loaded (or refused, offline) by transformers

    @field_validator("model_type", mode="before")
    @classmethod
    def _agrees_with_the_base(cls, value: Any, info: ValidationInfo) -> Any:
        """An explicit ``causal``/``seq2seq`` is checked now against a local base's ``config.json`` (a hub id's is
        read, and checked, when the base loads)."""
        if value not in MODEL_TYPES:
            raise ValueError(_model_type_message(value))
        config = Path(info.data.get("base", "")) / "config.json"
        if value == "auto" or "base" not in info.data or not config.is_file():
            return value
        try:
            data = json.loads(config.read_text())
        except (OSError, json.JSONDecodeError):
            return value  # transformers will say what is wrong with it when the base loads
        if isinstance(data, dict):
            try:
                base_model_type(bool(data.get("is_encoder_decoder", False)), value, info.data["base"])
            except BaseModelTypeError as exc:
                raise Complete(str(exc)) from None
        return value

    @field_validator("experts", mode="before")
    @classmethod
    def _some_experts(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise ValueError("expected a non-empty list of folders")
        return value

    @field_validator("experts")
    @classmethod
    def _unique_experts(cls, value: list[ExpertSpec]) -> list[ExpertSpec]:
        names = [e.name for e in value]
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique, got {names}")
        return value

    @field_validator("stopping", mode="before")
    @classmethod
    def _empty_stopping(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("fidelity", mode="before")
    @classmethod
    def _fidelity_switch(cls, value: Any) -> Any:
        """``off`` (or ``false``, or empty): every example; a mapping: ``{min_examples, eta, seed}``."""
        if value is None or value is False or value == "off":
            return None
        if not isinstance(value, dict):
            raise ValueError(f"must be off or a mapping with min_examples (and eta, seed), got {value!r}")
        return value

    @field_validator("simplex", mode="before")
    @classmethod
    def _simplex_switch(cls, value: Any) -> Any:
        """``true`` (sharpness 4), ``false`` or an empty mapping (off), or ``{sharpness}``."""
        if value is True:
            return {}
        return None if value is False or value == {} else value

    @field_validator("threads", mode="before")
    @classmethod
    def _thread_count(cls, value: Any) -> Any:
        """A positive count, or ``auto``, which must be asked for: quiet, it was about 5 % faster; beside other
        work, up to 11× slower. Empty (``threads:``): the default."""
        if value is None:
            return DEFAULT_THREADS
        if value == "auto":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"must be a positive integer or auto, got {value!r}")
        return value

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_folder(cls, value: str | None, info: ValidationInfo) -> str | None:
        root = _root(info)
        if value is not None and root is not None and (root / value).is_dir():
            return str(root / value)
        return value

    @field_validator("output")
    @classmethod
    def _output_folder(cls, value: str, info: ValidationInfo) -> str:
        root = _root(info)
        return value if root is None else resolve_path(root, value)
