"""Validate a pipeline configuration against its JSON schema and fill in the defaults.

The Snakefile calls `validate_config` at start-up so a misspelt or out-of-range field fails
once, with a message naming the field, before any job runs.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration field is missing, misspelt or out of range."""


def _with_defaults(validator_class):
    """Extend a jsonschema validator so that validating also fills `default` values in place."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _get(config, dotted: str):
    for key in dotted.split("."):
        config = config[int(key)] if isinstance(config, list) else config[key]
    return config


def _field(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _non_finite(value, path=()):
    """Dotted path of the first NaN or ±inf number in a nested config, else None.

    JSON Schema's `number` admits them (YAML `.nan`, `.inf`), and a NaN passes every range
    check because each comparison with it is false.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return ".".join(map(str, path)) or "<top level>"
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, (*path, key))
        if found:
            return found
    return None


def validate_config(config: dict, schema_path, *, source: str = "config") -> dict:
    """Return a copy of `config` validated against the schema, with defaults filled in.

    Raises
    ------
    ConfigError
        Naming the first offending field, what the schema expects there and what was found.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    field = _non_finite(config)
    if field:
        raise ConfigError(f"{source}: field '{field}' is invalid: numbers must be finite; "
                          f"found {_get(config, field)!r}")
    filled = copy.deepcopy(config)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: (len(e.absolute_path), _field(e)))
    if errors:
        error = errors[0]
        if error.validator == "additionalProperties" and "properties" in error.schema:
            known = sorted(error.schema["properties"])
            unknown = sorted(set(error.instance) - set(known))
            prefix = _field(error) + "." if error.absolute_path else ""
            raise ConfigError(
                f"{source}: unknown field '{prefix}{unknown[0]}'; expected one of {known}"
            ) from error
        expected = error.schema.get("description") if isinstance(error.schema, dict) else None
        hint = f" (field: {expected})" if expected else ""
        found = json.dumps(error.instance, default=str)
        if len(found) > 80:
            found = found[:77] + "..."
        raise ConfigError(
            f"{source}: field '{_field(error)}' is invalid: {error.message}{hint}; found {found}"
        ) from error
    return filled
