"""Panel helpers over grafana-foundation-sdk builders, recording what each panel answers.

    board = Board("aipulse-latency", "aipulse / Latency", db="aipulse")
    board.timeseries("P99 by feature", "Which feature's P99 is climbing?",
                     metric_sql(["latency_p99_ms"], db, by="feature", series=True),
                     columns=["time", "feature", "latency_p99_ms"], unit="ms")
    dashboard_json = board.build()

Every ClickHouse target is recorded with the columns the panel expects (``Board.docs``):
docs/grafana.md's table and the query tests are made from that record. Every board also
carries the ``aipulse alerts`` annotation (``Board.annotations``): the streaming detector's
alerts from the ``alerts`` table drawn as regions, filtered by the board's variables.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import (alertgroups, barchart, common, dashboard, prometheus,
                                             stat, table, timeseries)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from . import datasources as ds
from .chquery import TABLE, TIME_SERIES, ClickHouseQueryBuilder
from .sqlparts import DIMENSIONS, alert_annotation_sql

WIDTH = 24
ANNOTATION_NAME = "aipulse alerts"
ANNOTATION_QUESTION = ("When did which alert fire and resolve (regions; tags: severity, rule), for the selected "
                       "service / feature / model / variant?")
ANNOTATION_COLUMNS = ["time", "timeEnd", "title", "text", "tags"]


@dataclass
class QueryDoc:
    ref_id: str
    sql: str
    format: int
    columns: list[str]


@dataclass
class PanelDoc:
    board_uid: str
    title: str
    question: str
    kind: str
    queries: list[QueryDoc] = field(default_factory=list)
    promql: list[str] = field(default_factory=list)


def _thresholds(steps: list[tuple[float | None, str]]) -> dashboard.ThresholdsConfig:
    return (dashboard.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=v, color=c) for v, c in steps]))


class Board:
    """One dashboard: variables, links to the others, panels laid out in rows of 24."""

    def __init__(self, uid: str, title: str, db: str, description: str, time_from: str = "now-6h"):
        self.uid, self.title, self.db = uid, title, db
        self.docs: list[PanelDoc] = []
        self._x = self._y = self._row_h = 0
        self._next_id = 1
        self.b = (dashboard.Dashboard(title).uid(uid).description(description)
                  .tags(["aipulse"]).editable().timezone("utc").refresh("30s")
                  .time(time_from, "now").tooltip(dm.DashboardCursorSync.CROSSHAIR)
                  .link(dashboard.DashboardLink("aipulse dashboards").type(dm.DashboardLinkType.DASHBOARDS)
                        .tags(["aipulse"]).as_dropdown(False).include_vars(True).keep_time(True)))
        for i, dim in enumerate(DIMENSIONS):
            # each variable lists the values seen in the range under the variables before it
            parents = " AND ".join(f"$__conditionalAll({p} IN (${{{p}:singlequote}}), ${p})" for p in DIMENSIONS[:i])
            q = (f"SELECT DISTINCT {dim} FROM {db}.metrics_hourly "
                 f"WHERE window_start >= toStartOfHour($__fromTime) AND window_start <= $__toTime"
                 + (f" AND {parents}" if parents else "") + f" ORDER BY {dim}")
            self.b.with_variable(
                dashboard.QueryVariable(dim).label(dim).datasource(ds.CLICKHOUSE_REF)
                .query({"rawSql": q, "editorType": "sql", "format": TABLE, "queryType": "table",
                        "refId": f"var_{dim}"})
                .multi(True).include_all(True).refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(dm.VariableSort.ALPHABETICAL_ASC)
                .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"])))
            self.variable_queries = getattr(self, "variable_queries", []) + [(dim, q)]
        self.annotations: list[QueryDoc] = []
        self._alert_annotation()

    def _alert_annotation(self) -> None:
        """The detector's alerts as regions on every panel (the plugin's standard annotation support:
        its target is a plain SQL query returning time, timeEnd, title, text, tags)."""
        sql = alert_annotation_sql(self.db)
        # The SDK types annotation targets after the built-in Grafana datasource's; the plugin's
        # target is its own query model, which encodes the same way as a panel target.
        target = ClickHouseQueryBuilder("annotation").raw_sql(sql).format(TABLE).datasource(
            {"type": ds.CLICKHOUSE_REF.type_val, "uid": ds.CLICKHOUSE_REF.uid})
        self.b.annotation(dashboard.AnnotationQuery().name(ANNOTATION_NAME).datasource(ds.CLICKHOUSE_REF)
                          .enable(True).hide(False).icon_color("red").target(target))
        self.annotations.append(QueryDoc("annotation", sql, TABLE, ANNOTATION_COLUMNS))

    # layout ---------------------------------------------------------------------------
    def _place(self, builder, w: int, h: int):
        if self._x + w > WIDTH:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        builder.grid_pos(dm.GridPos(h=h, w=w, x=self._x, y=self._y))
        builder.id(self._next_id)
        self._next_id += 1
        self._x += w
        self._row_h = max(self._row_h, h)
        return builder

    def row(self, title: str) -> None:
        if self._x:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        self.b.with_row(dashboard.Row(title).id(self._next_id)
                        .grid_pos(dm.GridPos(h=1, w=WIDTH, x=0, y=self._y)))
        self._next_id += 1
        self._y += 1

    # targets --------------------------------------------------------------------------
    def _ch(self, doc: PanelDoc, builder, queries: list[tuple[str, int, list[str]]]):
        builder.datasource(ds.CLICKHOUSE_REF)
        for i, (sql, fmt, cols) in enumerate(queries):
            ref = chr(ord("A") + i)
            builder.with_target(ClickHouseQueryBuilder(ref).raw_sql(sql).format(fmt).datasource(
                {"type": ds.CLICKHOUSE_REF.type_val, "uid": ds.CLICKHOUSE_REF.uid}))
            doc.queries.append(QueryDoc(ref, sql, fmt, cols))
        self.docs.append(doc)
        self.b.with_panel(builder)

    # panel kinds ----------------------------------------------------------------------
    def timeseries(self, title, question, sql, columns, unit="short", w=12, h=8,
                   thresholds: list[tuple[float | None, str]] | None = None, more=()):
        p = (timeseries.Panel().title(title).description(question).unit(unit)
             .legend(common.VizLegendOptions().show_legend(True).display_mode(cm.LegendDisplayMode.TABLE)
                     .placement(cm.LegendPlacement.BOTTOM).calcs(["mean", "max", "lastNotNull"]))
             .span_nulls(False).line_width(1).fill_opacity(10))
        if thresholds:
            p.thresholds(_thresholds(thresholds)).thresholds_style(
                common.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.LINE))
        self._place(p, w, h)
        self._ch(PanelDoc(self.uid, title, question, "timeseries"), p,
                 [(sql, TIME_SERIES, columns), *more])

    def stat(self, title, question, sql, columns, unit="short", w=4, h=4, decimals=None,
             thresholds: list[tuple[float | None, str]] | None = None):
        p = (stat.Panel().title(title).description(question).unit(unit)
             .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .color_mode(cm.BigValueColorMode.VALUE).graph_mode(cm.BigValueGraphMode.NONE))
        if decimals is not None:
            p.decimals(decimals)
        p.thresholds(_thresholds(thresholds or [(None, "green")]))
        self._place(p, w, h)
        self._ch(PanelDoc(self.uid, title, question, "stat"), p, [(sql, TABLE, columns)])

    def table(self, title, question, sql, columns, w=24, h=8, units: dict[str, str] | None = None):
        p = table.Panel().title(title).description(question)
        for col, unit in (units or {}).items():
            p.override_by_name(col, [dm.DynamicConfigValue(id_val="unit", value=unit)])
        self._place(p, w, h)
        self._ch(PanelDoc(self.uid, title, question, "table"), p, [(sql, TABLE, columns)])

    def bars(self, title, question, sql, columns, w=12, h=8, unit="short"):
        p = (barchart.Panel().title(title).description(question).unit(unit)
             .x_tick_label_rotation(-45).show_value(cm.VisibilityMode.NEVER))
        self._place(p, w, h)
        self._ch(PanelDoc(self.uid, title, question, "barchart"), p, [(sql, TABLE, columns)])

    def prom(self, title, question, exprs: list[tuple[str, str]], unit="short", w=12, h=8):
        p = timeseries.Panel().title(title).description(question).unit(unit).datasource(ds.PROMETHEUS_REF)
        for i, (expr, legend) in enumerate(exprs):
            p.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i)))
        self._place(p, w, h)
        self.docs.append(PanelDoc(self.uid, title, question, "timeseries", promql=[e for e, _ in exprs]))
        self.b.with_panel(p)

    def firing_alerts(self, title, question, w=24, h=6):
        p = (alertgroups.Panel().title(title).description(question).datasource(ds.ALERTMANAGER_REF)
             .alertmanager(ds.ALERTMANAGER_REF.uid).labels("service").expand_all(False))
        self._place(p, w, h)
        self.docs.append(PanelDoc(self.uid, title, question, "alertgroups"))
        self.b.with_panel(p)

    def build(self) -> dict:
        """The dashboard JSON (a plain dict, as the SDK encodes it)."""
        import json

        return json.loads(json.dumps(self.b.build(), cls=JSONEncoder))
