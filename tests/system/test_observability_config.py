"""Static checks of the observability configuration (no cluster needed).

- The Grafana dashboard parses, every PromQL query in it is valid (promtool check rules),
  and every metric it queries is in the catalogue src/common/metric_names.h, which is what
  the nodes register (the live test in test_observability.py checks the nodes' /metrics).
- The Prometheus scrape configurations are valid (promtool check config) and scrape every
  15 s.
"""
import json
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dais.json"
NAMES_H = ROOT / "src" / "common" / "metric_names.h"
PROM_DIR = ROOT / "deploy" / "prometheus"

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
METRIC_RE = re.compile(r"\b((?:dais|process)_[a-z0-9_]+)\b")


def promtool():
    path = shutil.which("promtool")
    assert path, "promtool not found: scripts/setup.sh installs Debian's prometheus package"
    return path


def catalogue():
    """Metric names the nodes export: quoted names and process_* names in metric_names.h."""
    text = NAMES_H.read_text()
    names = set(re.findall(r'#define\s+DAIS_M_\w+\s+"([a-z0-9_]+)"', text))
    names |= set(re.findall(r"\b(process_[a-z_]+)\b", text))
    return names


def dashboard_queries():
    dash = json.loads(DASHBOARD.read_text())
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"]))
            walk(p.get("panels", []))

    walk(dash["panels"])
    return dash, out


def concrete(expr):
    """A dashboard query with Grafana's variables replaced, as Prometheus would get it."""
    return expr.replace("$__rate_interval", "1m").replace("$job", ".*")


def base_name(metric, known):
    if metric in known:
        return metric
    for suffix in HISTOGRAM_SUFFIXES:
        if metric.endswith(suffix) and metric[: -len(suffix)] in known:
            return metric[: -len(suffix)]
    return None


def test_dashboard_structure():
    dash, queries = dashboard_queries()
    assert dash["uid"] and dash["title"]
    assert queries, "the dashboard has no queries"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
    # every topic the issue names has a panel built on the matching metric
    used = " ".join(expr for _, expr in queries)
    for metric in ("dais_workers", "dais_breaker_state", "dais_http_requests_total",
                   "dais_request_duration_seconds_bucket",
                   "dais_time_to_first_token_seconds_bucket",
                   "dais_worker_decode_tokens_total", "dais_requests_queued",
                   "dais_worker_queue_depth", "dais_worker_kv_cache_used_ratio"):
        assert metric in used, f"no dashboard panel queries {metric}"


def test_dashboard_metrics_are_in_the_catalogue():
    known = catalogue()
    assert "dais_http_requests_total" in known and "process_cpu_seconds_total" in known
    _, queries = dashboard_queries()
    for title, expr in queries:
        for metric in METRIC_RE.findall(expr):
            assert base_name(metric, known), f"panel {title!r}: {metric} is not in metric_names.h"


def test_dashboard_queries_are_valid_promql(tmp_path):
    _, queries = dashboard_queries()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dais:dashboard_query:{i}", "expr": concrete(expr)}
        for i, (_, expr) in enumerate(queries)]}]}
    f = tmp_path / "rules.json"  # YAML is a superset of JSON
    f.write_text(json.dumps(rules))
    r = subprocess.run([promtool(), "check", "rules", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-local.yml"])
def test_prometheus_config(name):
    path = PROM_DIR / name
    r = subprocess.run([promtool(), "check", "config", str(path)], capture_output=True,
                       text=True, cwd=PROM_DIR)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^\s*scrape_interval:\s*15s\s*$", path.read_text(), re.M)
