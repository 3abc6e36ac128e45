"""A mergekit recipe given to ``evogm-opt merge``: refused in one line that writes the same merge in our schema
(the models' weights are not copied: they become the searched coefficients)."""

from __future__ import annotations

from typing import Any


def _mergekit_model(item: Any) -> str:
    """A mergekit model reference as our expert: ``BASE+LORA`` is the LoRA folder, else the model itself."""
    model = item.get("model", "?") if isinstance(item, dict) else item
    return str(model).rsplit("+", 1)[-1]


def _shared_model_parameter(models: list[Any], key: str) -> Any:
    """A per-model mergekit parameter that every model sets to the same scalar (``None`` otherwise)."""
    values = [(m.get("parameters") or {}).get(key) if isinstance(m, dict) else None for m in models]
    same = values and values[0] is not None and all(v == values[0] for v in values)
    return values[0] if same and isinstance(values[0], (int, float, bool, str)) else None


def mergekit_recipe_message(data: dict[str, Any]) -> str | None:
    """Why ``data`` is refused when it is a mergekit recipe: one line saying so, with the same merge in our schema
    (``None``: it is not one)."""
    if "merge_method" not in data and not ({"models", "slices"} & set(data) and "base" not in data):
        return None
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
    return (
        "config: this is a mergekit recipe (merge_method, models, base_model), not an evogm-opt merge config; in "
        f"ours it reads  base: {data.get('base_model', 'BASE')}  experts: [{experts}]  method: {{{method}}}  "
        "tasks: {seen: [{name: ..., val: ...jsonl}]}  — the models' weights are not copied: they become the "
        "searched coefficients, one per expert (schema: docs/llm-merge.md)"
    )
