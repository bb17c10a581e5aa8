#!/usr/bin/env python3
"""CTest deploy_dashboard_metrics: every query of the Grafana dashboard names metrics, and labels,
that logn_server really exports.

The metric names come from a running server: the real logn_server starts on a contract model
(127.0.0.1, ports chosen by the kernel), answers one GetModelInfo (`logn info`) so that the
per-method families have a sample, and its /metrics is scraped. From the exposition text: each
family's samples as Prometheus stores them (a histogram `x` as x_bucket / x_sum / x_count, with
`le` on x_bucket) and the label names each sample carries. Each panel query of
deploy/compose/grafana/dashboards/logn-serve.json (rows included) is read as PromQL: its metric
names (selectors, `__name__` matchers) must be exported, and the labels it groups by, matches on
or puts in the legend must exist on them or be added by the scrape (instance, job, and the k8s
config's namespace, pod). Then the check is shown to fail on broken copies of the dashboard (a
misspelt metric, a family that does not exist, _bucket on a counter, a label the metric lacks, a
legend label, a query without a metric).

    check_dashboard_metrics.py --server-binary logn_server --cli-binary logn --model M.pt
                               --work-dir DIR [--dashboard FILE]
    check_dashboard_metrics.py --metrics-file SCRAPE.txt     # a saved scrape, without a server
"""
import argparse
import copy
import difflib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "client", "testing"))

# Labels the scrape adds: Prometheus' target labels, and the k8s scrape config's relabelling.
TARGET_LABELS = {"instance", "job", "namespace", "pod"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Aggregation operators take `by (...)` before their parentheses: never metric names.
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
KEYWORDS = GROUPING | AGGREGATIONS | {"offset", "bool", "and", "or", "unless", "atan2", "inf",
                                      "nan", "start", "end", "Inf", "NaN"}
TOKEN = re.compile(r'\s*(?:(?P<str>"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`)'
                   r'|(?P<num>\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:ms|s|m|h|d|w|y)*)'
                   r'|(?P<id>[a-zA-Z_:][a-zA-Z0-9_:]*)'
                   r'|(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){}\[\],=<>@]))')


class DashboardError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# The server's exports


def parse_exposition(text):
    """{sample name: set of label names} as Prometheus would store the scrape."""
    families, samples = {}, {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            families[m.group(1)] = m.group(2)
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
        if m:
            labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
            samples.setdefault(m.group(1), set()).update(labels)
    exported = {}
    for name, kind in families.items():
        if kind == "histogram":
            names = [f"{name}_bucket", f"{name}_sum", f"{name}_count"]
        elif kind == "summary":
            names = [name, f"{name}_sum", f"{name}_count"]
        else:
            names = [name]
        for n in names:
            exported.setdefault(n, set())
        if kind == "histogram":
            exported[f"{name}_bucket"].add("le")
    for name, labels in samples.items():
        exported.setdefault(name, set()).update(labels)
    return exported


def scrape_running_server(args):
    from logn_test_server import LognServer
    work = os.path.abspath(args.work_dir)
    with LognServer(args.server_binary, args.model, work,
                    extra_args=["--metrics_listen=127.0.0.1:0"]) as server:
        with open(os.path.join(work, "port")) as f:
            ports = dict(line.strip().split("=", 1) for line in f if "=" in line)
        if "metrics" not in ports:
            raise DashboardError(f"the port file names no metrics port: {ports}")
        info = subprocess.run([args.cli_binary, "info", "--server", server.address],
                              capture_output=True, text=True, timeout=60)
        if info.returncode != 0:
            raise DashboardError(f"logn info failed: {info.stdout}{info.stderr}")
        url = f"http://127.0.0.1:{ports['metrics']}/metrics"
        body, deadline = "", time.monotonic() + 30
        while time.monotonic() < deadline:
            body = urllib.request.urlopen(url, timeout=5).read().decode()
            if 'method="GetModelInfo"' in body:
                break
            time.sleep(0.2)
        print(f"ok: scraped {url} from {args.server_binary} on {os.path.basename(args.model)} "
              f"after one GetModelInfo ({len(body)} bytes)")
        return body


# ---------------------------------------------------------------------------------------------
# The dashboard's queries


def tokens(expr):
    pos, out = 0, []
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise DashboardError(f"cannot read PromQL at {expr[pos:]!r} in {expr!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def read_query(expr):
    """(metric names, label names used in groupings and matchers) of a PromQL expression."""
    toks = tokens(expr)
    metrics, labels, grouped = set(), set(), set()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "id" and text in GROUPING and following == "(":
            j = i + 2
            while j < len(toks) and toks[j][1] != ")":
                if toks[j][0] == "id":
                    grouped.add(toks[j][1])
                j += 1
            i = j + 1
            continue
        if kind == "id" and text == "offset":
            i += 2
            continue
        if text == "{":  # label matchers: name op "value"
            j = i + 1
            while j < len(toks) and toks[j][1] != "}":
                if toks[j][0] == "id" and j + 2 < len(toks) and toks[j + 2][0] == "str":
                    if toks[j][1] == "__name__" and toks[j + 1][1] == "=":
                        metrics.add(toks[j + 2][1][1:-1])
                    else:
                        labels.add(toks[j][1])
                    j += 3
                    continue
                j += 1
            i = j + 1
            continue
        if text == "[":  # a range or subquery: durations only
            while i < len(toks) and toks[i][1] != "]":
                i += 1
            i += 1
            continue
        if kind == "id" and following != "(" and text not in KEYWORDS:
            metrics.add(text)
        i += 1
    return metrics, labels | grouped, grouped


def panels_of(dashboard):
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])  # collapsed rows


def check_dashboard(dashboard, exported, where):
    queries = 0
    for p in panels_of(dashboard):
        for t in p.get("targets", []):
            expr = t.get("expr")
            if not expr:
                continue
            queries += 1
            w = f"{where}: panel {p.get('title')!r} query {expr!r}"
            metrics, labels, grouped = read_query(expr)
            if not metrics:
                raise DashboardError(f"{w}: names no metric")
            unknown = sorted(m for m in metrics if m not in exported)
            if unknown:
                near = {m: difflib.get_close_matches(m, exported, n=2) for m in unknown}
                raise DashboardError(f"{w}: logn_server exports no {unknown} (closest: {near})")
            available = set().union(*(exported[m] for m in metrics)) | TARGET_LABELS
            missing = sorted(labels - available)
            if missing:
                raise DashboardError(f"{w}: label(s) {missing} are on none of {sorted(metrics)} "
                                     f"(they carry {sorted(available - TARGET_LABELS)})")
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")))
            scope = (grouped - {"le"}) if grouped else available
            if legend - scope:
                raise DashboardError(f"{w}: legend {t.get('legendFormat')!r} uses "
                                     f"{sorted(legend - scope)}, which the query's result does "
                                     f"not carry ({sorted(scope)})")
    if queries == 0:
        raise DashboardError(f"{where}: no panel has a query")
    return queries


# ---------------------------------------------------------------------------------------------
# Broken copies: each must be refused.


def replace_in_exprs(old, new):
    def edit(dashboard):
        hits = 0
        for p in panels_of(dashboard):
            for t in p.get("targets", []):
                if old in t.get("expr", ""):
                    t["expr"] = t["expr"].replace(old, new)
                    hits += 1
        assert hits, f"no query contains {old!r}"
    return edit


def set_target(title, index, **fields):
    def edit(dashboard):
        panel = next(p for p in panels_of(dashboard) if p.get("title") == title)
        panel["targets"][index].update(fields)
    return edit


BROKEN = [
    ("a misspelt metric", replace_in_exprs("logn_requests_total", "logn_request_total"),
     "exports no ['logn_request_total']"),
    ("a histogram family that does not exist",
     replace_in_exprs("logn_queue_duration_seconds_bucket", "logn_queue_seconds_bucket"),
     "exports no ['logn_queue_seconds_bucket']"),
    ("_bucket of a counter",
     replace_in_exprs("rate(logn_calibration_rows_total[1m])",
                      "rate(logn_calibration_rows_total_bucket[1m])"),
     "exports no ['logn_calibration_rows_total_bucket']"),
    ("a metric by __name__", replace_in_exprs("logn_stats_active_version",
                                              '{__name__="logn_stats_active_versions"}'),
     "exports no ['logn_stats_active_versions']"),
    ("grouping by a label the metric lacks",
     replace_in_exprs("sum by (method, code) (rate(logn_requests_total[1m]))",
                      "sum by (model, code) (rate(logn_requests_total[1m]))"),
     "label(s) ['model'] are on none of ['logn_requests_total']"),
    ("a matcher on a label the metric lacks",
     replace_in_exprs("max by (model) (logn_stats_active_version)",
                      'max by (model) (logn_stats_active_version{stage="raw"})'),
     "label(s) ['stage'] are on none of ['logn_stats_active_version']"),
    ("a legend label the result lacks",
     set_target("Request rate by method and code", 0, legendFormat="{{pod_name}} {{code}}"),
     "uses ['pod_name']"),
    ("a query without a metric", set_target("Calibration jobs by state", 0, expr="vector(1)"),
     "names no metric"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-binary")
    parser.add_argument("--cli-binary")
    parser.add_argument("--model")
    parser.add_argument("--work-dir")
    parser.add_argument("--metrics-file", help="a saved /metrics scrape instead of a server")
    parser.add_argument("--dashboard", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "compose", "grafana",
        "dashboards", "logn-serve.json"))
    args = parser.parse_args()
    try:
        if args.metrics_file:
            with open(args.metrics_file) as f:
                body = f.read()
            print(f"ok: read the scrape {args.metrics_file}")
        else:
            if not (args.server_binary and args.cli_binary and args.model and args.work_dir):
                parser.error("give --server-binary, --cli-binary, --model and --work-dir, or "
                             "--metrics-file")
            body = scrape_running_server(args)
        exported = parse_exposition(body)
        logn = sorted(n for n in exported if n.startswith("logn_"))
        if not logn:
            raise DashboardError("the scrape has no logn_ metric")
        print(f"ok: logn_server exports {len(logn)} logn_ series names: {', '.join(logn)}")
        with open(args.dashboard) as f:
            dashboard = json.load(f)
        queries = check_dashboard(dashboard, exported, os.path.basename(args.dashboard))
        print(f"ok: the dashboard's {queries} queries name only exported metrics and labels")
        missed = []
        for ident, edit, expected in BROKEN:
            broken = copy.deepcopy(dashboard)
            edit(broken)
            try:
                check_dashboard(broken, exported, "broken copy")
                missed.append(ident)
                print(f"FAIL: broken copy ({ident}) passed")
            except DashboardError as e:
                if expected in str(e):
                    print(f"ok: broken copy refused ({ident}): {str(e)[:200]}")
                else:
                    missed.append(ident)
                    print(f"FAIL: broken copy ({ident}) refused for another reason than "
                          f"{expected!r}: {e}")
        print(f"dashboard metrics: {len(BROKEN) - len(missed)} passed, {len(missed)} failed "
              f"(broken copies)")
        return 1 if missed else 0
    except DashboardError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
