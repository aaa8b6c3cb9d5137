"""The backup DAG's trigger form, declared once.

The DAG builds its ``Param``s from ``FIELDS`` (``Field.param_arguments``), the plugin builds the
request body of ``POST /backup/api/v1/runs`` from the same fields, and ``RunPlan.create`` takes a
Param left out of a run's conf from ``defaults()``. Each field is a plain description in JSON
Schema terms (what Airflow's form renders), so this module needs neither Airflow nor pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The switches that leave a part out; a run needs at least one of them true.
PART_SWITCHES = ("include_database", "include_auth", "include_storage")


@dataclass(frozen=True)
class Field:
    """One entry of the form: a JSON Schema ``type`` (``null`` added when ``nullable``), and for
    an array the ``item_type`` of its items."""

    name: str
    type: str
    default: Any
    title: str
    description: str
    nullable: bool = False
    item_type: str | None = None

    def json_schema_type(self) -> str | list[str]:
        return ["null", self.type] if self.nullable else self.type

    def param_arguments(self) -> dict[str, Any]:
        """The keyword arguments of Airflow's ``Param`` for this field."""
        arguments = {
            "default": self.default,
            "type": self.json_schema_type(),
            "title": self.title,
            "description": self.description,
        }
        if self.item_type is not None:
            arguments["items"] = {"type": self.item_type}
        return arguments


FIELDS: tuple[Field, ...] = (
    Field(
        "force",
        "boolean",
        False,
        title="Force",
        description="Back up even when backup_enabled is false.",
    ),
    Field(
        "buckets",
        "array",
        None,
        title="Buckets",
        description="Only these buckets (default: the configured list, or all).",
        nullable=True,
        item_type="string",
    ),
    Field(
        "include_database",
        "boolean",
        True,
        title="Database",
        description="Include the pg_dump of the database.",
    ),
    Field(
        "include_auth",
        "boolean",
        True,
        title="Auth users",
        description="Include auth/users.json.",
    ),
    Field(
        "include_storage",
        "boolean",
        True,
        title="Storage",
        description="Include the Storage buckets.",
    ),
)


def defaults() -> dict[str, Any]:
    """Each field's default, by name: what a run triggered without the field gets."""
    return {field.name: field.default for field in FIELDS}
