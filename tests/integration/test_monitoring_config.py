"""deploy/prometheus and deploy/grafana against promtool and against the code's metrics.

promtool (Debian's ``prometheus`` package, installed by ``make test``; ``$TRAD_PROMTOOL``,
default /usr/bin/promtool) checks the scrape config, the alert rules and their unit tests
(alerts_test.yml: each alert fires on a planted series, not on a healthy one), and that
every dashboard query parses. Without promtool those tests skip, and fail under CI=true.

Every metric name in an alert or a dashboard query must be one the code exports:
``app.metrics.exported_names()`` (every family name, the gauges read from the database at
scrape time included), nothing hard-coded here.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.services import system_program

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "trad.json"
TOKEN_FILE = "/etc/trad/prometheus.token"
# Names Prometheus itself makes for every target.
PROMETHEUS_OWN = {"up"}


def promtool() -> str:
    return system_program("TRAD_PROMTOOL", "/usr/bin/promtool", "promtool")


def run_promtool(*args: str, cwd: Path) -> str:
    done = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)
    output = f"$ promtool {' '.join(args)}\n{done.stdout}{done.stderr}"
    assert done.returncode == 0, output
    return output


# -- promtool ------------------------------------------------------------------------------

def test_the_scrape_config_is_valid(tmp_path):
    # promtool opens the token file and the rule files: a copy, its token file a temp one.
    source = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    assert TOKEN_FILE in source
    token = tmp_path / "prometheus.token"
    token.write_text("a-test-secret-of-enough-length\n")
    (tmp_path / "prometheus.yml").write_text(source.replace(TOKEN_FILE, str(token)))
    shutil.copy(PROMETHEUS_DIR / "alerts.yml", tmp_path / "alerts.yml")
    output = run_promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert "rule files found" in output, output


def test_the_scrape_config_has_the_three_jobs():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) >= {"trad-web", "trad-worker", "trad-beat"}
    assert jobs["trad-web"]["authorization"]["credentials_file"] == TOKEN_FILE
    assert config["rule_files"] == ["alerts.yml"]


def test_the_alert_rules_are_valid():
    run_promtool("check", "rules", "alerts.yml", cwd=PROMETHEUS_DIR)


def test_the_alert_rules_pass_their_unit_tests():
    run_promtool("test", "rules", "alerts_test.yml", cwd=PROMETHEUS_DIR)


def alerts() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_says_how_bad_and_what_and_is_tested_both_ways():
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    for rule in alerts():
        name = rule["alert"]
        assert "for" in rule, name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        own = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in own), f"{name} never shown firing"
        assert any(not case.get("exp_alerts") for case in own), f"{name} never shown quiet"


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel, rows' own panels included."""
    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield panel.get("title", "?"), target["expr"]
            yield from walk(panel.get("panels", []))

    return list(walk(json.loads(DASHBOARD.read_text())["panels"]))


def test_the_dashboard_uses_its_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    def walk(panels):
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    for panel in walk(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


GRAFANA_VARIABLE = re.compile(r"\$\{?__\w+\}?|\$\{\w+\}|\$\w+")


def test_every_dashboard_query_parses(tmp_path):
    # promtool has no "parse this expression": one recording rule per query does it.
    queries = dashboard_queries()
    assert queries
    rules = [{"record": f"trad:dashboard_query_{i}", "expr": GRAFANA_VARIABLE.sub("1m", expr)}
             for i, (_, expr) in enumerate(queries)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool("check", "rules", path.name, cwd=tmp_path)


# -- metric names --------------------------------------------------------------------------

KEYWORDS = {
    # aggregation operators, binary and set operators, modifiers, literals
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    "and", "or", "unless", "atan2", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "start", "end", "inf", "nan", "le",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)",
                       re.IGNORECASE)
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads, roughly: identifiers left once strings,
    label matchers, ranges and grouping label lists are out, that are not called (functions,
    ``sum(``) and not keywords."""
    text = GRAFANA_VARIABLE.sub("", expr)
    text = _STRING.sub('""', text)
    text = _MATCHERS.sub("{}", text)
    text = _RANGE.sub("[]", text)
    text = _GROUPING.sub(r"\1", text)
    return {m.group(1) for m in _IDENTIFIER.finditer(text)
            if m.group(1).lower() not in KEYWORDS and not re.fullmatch(r"\d+\w*", m.group(1))}


@pytest.mark.parametrize("expr,names", [
    ('sum by (strategy) (rate(trad_trials_total[$__rate_interval]))', {"trad_trials_total"}),
    (('histogram_quantile(0.95, sum by (le, route) '
      '(rate(trad_http_request_duration_seconds_bucket{route!="/x"}[5m])))'),
     {"trad_http_request_duration_seconds_bucket"}),
    ('sum(rate(a_count{outcome="failed"}[30m])) / sum(rate(a_count[30m])) > 0.2', {"a_count"}),
    ('b > 1000 and delta(b[15m]) > 0', {"b"}),
    ('time() - max(c_seconds) offset 5m', {"c_seconds"}),
    ('up{job=~"trad-.*"} == 0', {"up"}),
    ('sum without (instance) (d) / on (queue) group_left e', {"d", "e"}),
    ('count(f{a="sum(g)"}) > bool 1e3', {"f"}),
])
def test_metric_names_are_read_out_of_promql(expr, names):
    assert metric_names(expr) == names


def exportable_samples() -> set[str]:
    """Every sample name the code's metrics can show, from ``exported_names()`` (family or
    sample names): a counter X as X_total, a histogram as X_bucket, X_count and X_sum, a
    gauge as X; a name of unknown type (no module-level metric object, such as the gauges
    read from the database) as itself or with any of those suffixes."""
    from prometheus_client.metrics import MetricWrapperBase

    import app.metrics

    families = set(app.metrics.exported_names())
    assert families, "app.metrics.exported_names() is empty"
    types: dict[str, str] = {}
    for value in vars(app.metrics).values():
        if isinstance(value, MetricWrapperBase):
            types.update((family.name, family.type) for family in value.describe())
    samples = set(PROMETHEUS_OWN)
    for name in families:
        # A family name, or one of its sample names (X_total of a counter X, X_bucket...).
        base, kind = name, None
        for suffix in ("", "_total", "_bucket", "_count", "_sum", "_created", "_info"):
            if name.endswith(suffix) and name[:len(name) - len(suffix)] in types:
                base = name[:len(name) - len(suffix)]
                kind = types[base]
                break
        if kind == "counter":
            samples |= {base + "_total", base + "_created"}
        elif kind == "histogram":
            samples |= {base + suffix for suffix in ("_bucket", "_count", "_sum", "_created")}
        elif kind == "summary":
            samples |= {base, *(base + s for s in ("_count", "_sum", "_created"))}
        elif kind == "info":
            samples.add(base + "_info")
        elif kind in ("gauge", "stateset", "enum"):
            samples.add(base)
        else:
            samples |= {name, *(name + s for s in ("_total", "_bucket", "_count", "_sum"))}
    return samples


def test_every_metric_in_an_alert_or_a_panel_is_one_the_code_exports():
    used = [(f"alert {rule['alert']}", rule["expr"]) for rule in alerts()]
    used += [(f"panel {title!r}", expr) for title, expr in dashboard_queries()]
    exported = exportable_samples()
    unknown = sorted({(name, where) for where, expr in used for name in metric_names(expr)
                      if name not in exported})
    assert not unknown, "not exported by the code (app.metrics.exported_names()):\n" + "\n".join(
        f"  {name} in {where}" for name, where in unknown)
    # The parse found names at all: an empty set would pass anything.
    assert all(metric_names(expr) for _, expr in used), [w for w, e in used if not metric_names(e)]
