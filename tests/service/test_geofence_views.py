"""The views campaigns read geofence's tables through name columns those tables really have."""

from __future__ import annotations

import pytest
from sqlmodel import SQLModel

import geofence.service.tables  # noqa: F401  (registers every table)
from campaigns.storage.columns import UtcDateTime
from campaigns.storage.geofence_views import VIEWS


@pytest.mark.parametrize("name", sorted(VIEWS.tables))
def test_each_view_column_exists_in_the_owning_table_with_the_same_type(name: str) -> None:
    table = SQLModel.metadata.tables[name]
    for column in VIEWS.tables[name].columns:
        assert column.name in table.c, f"{name}.{column.name} is not a column of geofence's table"
        owned = table.c[column.name]
        assert column.type._type_affinity is owned.type._type_affinity, f"{name}.{column.name}"
        # UTC on the way in and aware on the way out, as the owner writes it
        assert isinstance(column.type, UtcDateTime) == isinstance(owned.type, UtcDateTime), column.name
        assert column.nullable == owned.nullable or column.nullable, f"{name}.{column.name} nullability"


def test_views_are_not_part_of_the_schema_the_service_creates() -> None:
    assert all(SQLModel.metadata.tables[n] is not VIEWS.tables[n] for n in VIEWS.tables)
