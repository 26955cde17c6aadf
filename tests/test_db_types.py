"""pysvc/db_types.py is what the pinned Supabase CLI generates from the migrations, and the row
models pysvc reads with agree with it."""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from pysvc import db_types, store
from pysvc.local import supabase_tools
from pysvc.local.stack import StackInfo


def test_generated_types_are_what_the_cli_generates_from_the_migrations(stack: StackInfo) -> None:
    fresh = supabase_tools.gen_types(stack.database_url)
    committed = supabase_tools.DB_TYPES.read_text()
    assert committed == fresh, "pysvc/db_types.py is stale (the schema changed): regenerate it with `make types`"


def _nullable(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


@pytest.mark.parametrize(
    ("model", "generated"),
    [
        (store.Plan, db_types.PublicPlans),
        (store.Intake, db_types.PublicIntakes),
        (store.SessionRow, db_types.PublicSessions),
    ],
)
def test_row_models_read_columns_the_schema_has(model: type[BaseModel], generated: type[BaseModel]) -> None:
    columns = generated.model_fields
    for name, field in model.model_fields.items():
        assert name in columns, f"{model.__name__}.{name} is not a column of {generated.__name__}"
        assert _nullable(field.annotation) == _nullable(columns[name].annotation), (
            f"{model.__name__}.{name}: nullable in one of the model and the schema but not the other"
        )
