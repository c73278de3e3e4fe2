"""Recipe files -> validated recipes: YAML, ``--set`` overrides, the model's schema, one-line errors.

A wrong key or type becomes one line naming the file and the dotted key, e.g.
``recipes/x.yaml: memory_conf.num_slot: unknown key for memory 'bridge' (did you mean 'num_slots'?)``.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Tag, ValidationError

from avtrain.config.models import DEFAULT_CHOICES, DEFAULT_MODEL, MODEL_SECTIONS
from avtrain.config.recipe import Recipe, RecipeError
from avtrain.registry import models


def _suggest(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _tagged(annotation: Any) -> dict[str, Any]:
    """{tag: model} of a tagged union field (``SpeechConf.decoder``), else {}."""
    members = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else ()
    out = {}
    for m in members:
        if typing.get_origin(m) is typing.Annotated:
            model, *meta = typing.get_args(m)
            out.update({t.tag: model for t in meta if isinstance(t, Tag)})
    return out


def _walk(model: Any, path: list[str]) -> tuple[list[str], Any]:
    """(``path`` without the tags pydantic inserts for a tagged union, the model at its end or None)."""
    clean, i = [], 0
    while i < len(path):
        field = getattr(model, "model_fields", {}).get(path[i])
        if field is None:
            return clean + path[i:], None
        clean.append(path[i])
        model, i = field.annotation, i + 1
        tags = _tagged(model)
        if tags and i < len(path) and path[i] in tags:
            model, i = tags[path[i]], i + 1
    return clean, model


def _fields_at(model: Any, path: list[str]) -> list[str]:
    """The keys a (nested) pydantic model accepts at ``path``."""
    return list(getattr(_walk(model, path)[1], "model_fields", {}))


def _clean(model: Any, loc: list[str]) -> list[str]:
    return _walk(model, loc)[0]


def _first_error(err: ValidationError, schema: type[BaseModel]) -> str:
    e = err.errors()[0]
    loc = [str(p) for p in e["loc"]]
    msg = e["msg"]
    if e["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    key = ".".join(_clean(schema, loc))
    if e["type"] == "extra_forbidden":
        return f"{key}: unknown key{_suggest(loc[-1], _fields_at(schema, loc[:-1]))}"
    if e["type"] == "missing":
        return f"{key}: required key is missing"
    got = e.get("input")
    shown = repr(got) if not isinstance(got, dict) else "a mapping"
    return f"{key}: {msg} (got {shown})" if key else msg


def _is_default(component: str, data: dict[str, Any]) -> bool:
    """A section a model does not read, exactly as run folders and checkpoints written before per-model schemas
    stored it (the default choice with its conf written out in full at defaults): safe to drop."""
    name = data.get(component)
    if name != DEFAULT_CHOICES[component] or f"{component}_conf" not in data:
        return False
    for schema in (entry.schema for entry in models().values()):
        cls = schema.MODEL_COMPONENTS.get(component, {}).get(name)
        if cls is not None:
            return data[f"{component}_conf"] == cls().model_dump(mode="json")
    return False


def validate_recipe(data: Any, source: str = "<recipe>") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a YAML mapping, got {type(data).__name__}")
    data = dict(data)
    model = data.get("model", DEFAULT_MODEL)
    known = models()
    if model not in known:
        raise RecipeError(f"{source}: model: unknown choice {model!r}; known: {', '.join(known)}")
    schema = known[model].schema
    data["model"] = model
    components = schema.components()
    # a model/memory mismatch first: it would otherwise surface as a misleading unknown key in the other's conf
    if "memory" in components:
        memory = data.get("memory", DEFAULT_CHOICES["memory"])
        want = list(components["memory"])
        if memory not in want:
            raise RecipeError(f"{source}: model {model!r} needs memory {want[0]!r} (got memory {memory!r})")
    for section in MODEL_SECTIONS:
        if section in components or not ({section, f"{section}_conf"} & set(data)):
            continue
        if _is_default(section, data):
            data.pop(section, None), data.pop(f"{section}_conf", None)
            continue
        own = [c for c in schema.MODEL_COMPONENTS if c != "model"]
        raise RecipeError(f"{source}: {section}: model {model!r} has no {section} (its components: "
                          f"{', '.join(own) or 'none beyond model_conf'}); remove it")
    # component confs are checked separately so the error names e.g. "memory_conf.num_slot"
    for component, choices in components.items():
        name = data.get(component, schema.model_fields[component].default)
        conf = data.get(f"{component}_conf", {}) or {}
        if name not in choices:
            raise RecipeError(f"{source}: {component}: unknown choice {name!r}; known: {', '.join(choices)}")
        if not isinstance(conf, dict):
            raise RecipeError(f"{source}: {component}_conf: expected a mapping (got {conf!r})")
        try:
            choices[name].model_validate(conf)
        except ValidationError as err:
            e = err.errors()[0]
            loc = [str(p) for p in e["loc"]]
            key = ".".join([f"{component}_conf", *_clean(choices[name], loc)])
            if e["type"] == "extra_forbidden":
                allowed = _fields_at(choices[name], loc[:-1])
                raise RecipeError(f"{source}: {key}: unknown key for {component} {name!r}"
                                  f"{_suggest(loc[-1], allowed)}") from None
            if e["type"] == "value_error":  # a check across keys (model_validator): its message names them
                raise RecipeError(f"{source}: {key}: {e['msg'].removeprefix('Value error, ')}") from None
            raise RecipeError(f"{source}: {key}: {e['msg']} (got {e.get('input')!r})") from None
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise RecipeError(f"{source}: {_first_error(err, schema)}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides; values are parsed as YAML (``3``, ``true``, ``[1, 2]``, ``null``)."""
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"{source} {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {} if node.get(p) is None else node[p]
                if not isinstance(node[p], dict):
                    raise RecipeError(f"{source} {item!r}: {p} is not a mapping")
            node = node[p]
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise RecipeError(f"{path}:{where} not valid YAML: {getattr(err, 'problem', err)}") from None
    data = apply_overrides(data or {}, overrides or [])
    return validate_recipe(data, str(path) + (" (with --set)" if overrides else ""))
