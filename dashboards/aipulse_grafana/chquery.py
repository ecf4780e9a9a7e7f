"""The query model of the ClickHouse datasource plugin (``grafana-clickhouse-datasource``).

grafana-foundation-sdk ships typed query models for Grafana's core datasources only, so this
module adds the one the plugin reads (its ``CHSqlQuery``: editorType "sql", rawSql, format,
queryType) as a cog ``Dataquery`` with a builder, and registers it so that dashboards
containing it load back into the SDK's models::

    from aipulse_grafana.chquery import ClickHouseQueryBuilder, TABLE
    q = ClickHouseQueryBuilder("A").raw_sql("SELECT 1 AS x").format(TABLE)
    panel_builder.with_target(q)

``format`` follows grafana-plugin-sdk-go's sqlutil.FormatQueryOption, which the plugin's
backend uses: 0 = time series (long frames are turned into one series per label value),
1 = table, 2 = logs, 3 = traces.
"""
from __future__ import annotations

import typing

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants

PLUGIN_ID = "grafana-clickhouse-datasource"
TIME_SERIES, TABLE = 0, 1
QUERY_TYPES = {TIME_SERIES: "timeseries", TABLE: "table"}


class ClickHouseQuery(cogvariants.Dataquery):
    """One SQL target of a panel or an alert rule."""

    def __init__(self, ref_id: str = "A", raw_sql: str = "", format_val: int = TABLE,
                 query_type: str | None = None, datasource: dict | None = None,
                 editor_type: str = "sql", hide: bool | None = None) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format_val = format_val
        self.query_type = query_type or QUERY_TYPES.get(format_val, "table")
        self.datasource = datasource
        self.editor_type = editor_type
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref_id,
            "editorType": self.editor_type,
            "format": self.format_val,
            "queryType": self.query_type,
            "rawSql": self.raw_sql,
        }
        if self.datasource is not None:
            out["datasource"] = self.datasource
        if self.hide is not None:
            out["hide"] = self.hide
        return out

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> "ClickHouseQuery":
        return cls(ref_id=data.get("refId", ""), raw_sql=data.get("rawSql", ""),
                   format_val=int(data.get("format", TABLE)), query_type=data.get("queryType"),
                   datasource=data.get("datasource"), editor_type=data.get("editorType", "sql"),
                   hide=data.get("hide"))


class ClickHouseQueryBuilder(cogbuilder.Builder[ClickHouseQuery]):
    """Builder in the SDK's style (chained setters, ``build()``)."""

    def __init__(self, ref_id: str = "A") -> None:
        self._internal = ClickHouseQuery(ref_id=ref_id)

    def build(self) -> ClickHouseQuery:
        return self._internal

    def raw_sql(self, sql: str) -> typing.Self:
        self._internal.raw_sql = sql
        return self

    def format(self, fmt: int) -> typing.Self:
        self._internal.format_val = fmt
        self._internal.query_type = QUERY_TYPES.get(fmt, "table")
        return self

    def datasource(self, ref: dict) -> typing.Self:
        self._internal.datasource = ref
        return self


def register() -> None:
    """Let the SDK's ``Dashboard.from_json`` decode our targets as ClickHouseQuery."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=PLUGIN_ID, from_json_hook=ClickHouseQuery.from_json))


register()
