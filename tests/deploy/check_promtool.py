#!/usr/bin/env python3
"""CTest deploy_promtool: `promtool check config` on every Prometheus configuration we ship:
deploy/compose/prometheus.yml and the prometheus.yml of each ConfigMap under deploy/k8s.

Debian's prometheus is built without Kubernetes service discovery (NEWS.Debian: "Kubernetes
support has been completely removed"), so its promtool rejects kubernetes_sd_configs. When it
does, this script checks those blocks itself (known keys and role), swaps them for an equivalent
file_sd_configs and lets promtool check the rest; it also runs the relabel rules on sample pods
to show that exactly the logn-serve pods' metrics port is kept. The Grafana dashboard's queries
go through `promtool check rules` as recording rules, so a PromQL typo fails here too.
"""
import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

K8S_SD_KEYS = {"api_server", "role", "namespaces", "selectors", "kubeconfig_file",
               "attach_metadata", "basic_auth", "authorization", "oauth2", "proxy_url",
               "follow_redirects", "enable_http2", "tls_config"}
K8S_SD_ROLES = {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}
NO_K8S_SD = "field kubernetes_sd_configs not found"


def relabel(labels, rules):
    """Prometheus relabelling for the actions our configs use; None when the target is dropped."""
    labels = dict(labels)
    for r in rules:
        value = r.get("separator", ";").join(labels.get(l, "") for l in r.get("source_labels", []))
        regex = re.compile(f"^(?:{r.get('regex', '(.*)')})$")
        action = r.get("action", "replace")
        if action == "keep" and not regex.match(value):
            return None
        if action == "drop" and regex.match(value):
            return None
        if action == "replace":
            m = regex.match(value)
            if m:
                labels[r["target_label"]] = m.expand(
                    r.get("replacement", "$1").replace("$", "\\"))
        elif action not in ("keep", "drop"):
            fail(f"relabel action {action} not simulated by check_promtool.py")
    return labels


def sample_pod(name_label, port):
    return {"__address__": f"10.0.0.1:{port}", "__meta_kubernetes_namespace": "logn",
            "__meta_kubernetes_pod_name": "logn-serve-abc",
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": name_label,
            "__meta_kubernetes_pod_container_port_number": str(port)}


def without_k8s_sd(config, tmp):
    """The config with each kubernetes_sd_configs checked here and swapped for file_sd_configs."""
    config = copy.deepcopy(config)
    for job in config.get("scrape_configs", []):
        sds = job.pop("kubernetes_sd_configs", None)
        if sds is None:
            continue
        for sd in sds:
            unknown = set(sd) - K8S_SD_KEYS
            if unknown:
                fail(f"job {job['job_name']}: unknown kubernetes_sd_configs keys {sorted(unknown)}")
            if sd.get("role") not in K8S_SD_ROLES:
                fail(f"job {job['job_name']}: kubernetes_sd_configs role {sd.get('role')!r} is "
                     f"not one of {sorted(K8S_SD_ROLES)}")
        targets = os.path.join(tmp, f"{job['job_name']}.targets.yml")
        with open(targets, "w") as f:
            yaml.safe_dump([{"targets": ["10.0.0.1:8501"], "labels": {}}], f)
        job["file_sd_configs"] = [{"files": [targets]}]
        rules = job.get("relabel_configs", [])
        kept = relabel(sample_pod("logn-serve", 8501), rules)
        if kept is None:
            fail(f"job {job['job_name']}: a logn-serve pod's port 8501 would be dropped")
        for other in (sample_pod("logn-serve", 8500), sample_pod("other", 8501)):
            if relabel(other, rules) is not None:
                fail(f"job {job['job_name']}: would also scrape {other}")
        print(f"ok: job {job['job_name']}: kubernetes_sd_configs {[sd['role'] for sd in sds]} "
              f"valid; relabelling keeps only logn-serve pods' port 8501 "
              f"(-> {kept['__address__']}, namespace={kept.get('namespace')}, pod={kept.get('pod')})")
    return config


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", default=os.path.normpath(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..")))
    parser.add_argument("--promtool", default=shutil.which("promtool") or "/usr/bin/promtool")
    args = parser.parse_args()
    if not os.access(args.promtool, os.X_OK):
        fail(f"{args.promtool} not found: install Debian's prometheus package (scripts/install-deps)")

    configs = [("deploy/compose/prometheus.yml",
                os.path.join(args.repo, "deploy", "compose", "prometheus.yml"))]
    with tempfile.TemporaryDirectory() as tmp:
        for root, _, files in os.walk(os.path.join(args.repo, "deploy", "k8s")):
            for name in sorted(files):
                if not name.endswith((".yaml", ".yml")):
                    continue
                path = os.path.join(root, name)
                with open(path) as f:
                    for doc in yaml.safe_load_all(f):
                        if (doc or {}).get("kind") == "ConfigMap" and \
                                "prometheus.yml" in doc.get("data", {}):
                            out = os.path.join(tmp, f"{doc['metadata']['name']}.prometheus.yml")
                            with open(out, "w") as o:
                                o.write(doc["data"]["prometheus.yml"])
                            rel = os.path.relpath(path, args.repo)
                            configs.append((f"{rel} (ConfigMap {doc['metadata']['name']})", out))
        if len(configs) < 2:
            fail("no ConfigMap with a prometheus.yml under deploy/k8s")
        for label, path in configs:
            out = subprocess.run([args.promtool, "check", "config", path], text=True,
                                 capture_output=True)
            if out.returncode != 0 and NO_K8S_SD in out.stdout + out.stderr:
                print(f"note: {args.promtool} has no Kubernetes service discovery (Debian's "
                      f"build); checking {label} without it")
                with open(path) as f:
                    config = without_k8s_sd(yaml.safe_load(f), tmp)
                path = os.path.join(tmp, "no-k8s-sd." + os.path.basename(path))
                with open(path, "w") as f:
                    yaml.safe_dump(config, f)
                out = subprocess.run([args.promtool, "check", "config", path], text=True,
                                     capture_output=True)
                label += " (kubernetes_sd_configs -> file_sd_configs)"
            if out.returncode != 0:
                fail(f"promtool check config {label}:\n{out.stdout}{out.stderr}")
            print(f"ok: promtool check config {label}")
        # The dashboard's PromQL, parsed by promtool as recording rules.
        dash_path = os.path.join(args.repo, "deploy", "compose", "grafana", "dashboards",
                                 "logn-serve.json")
        with open(dash_path) as f:
            exprs = [t["expr"] for p in json.load(f)["panels"] for t in p.get("targets", [])]
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
        rules_path = os.path.join(tmp, "dashboard.rules.yml")
        with open(rules_path, "w") as f:
            yaml.safe_dump(rules, f)
        out = subprocess.run([args.promtool, "check", "rules", rules_path], text=True,
                             capture_output=True)
        if out.returncode != 0:
            fail(f"promtool check rules on the queries of {dash_path}:\n{out.stdout}{out.stderr}")
        print(f"ok: promtool parses the dashboard's {len(exprs)} queries")
    print(f"deploy_promtool: {len(configs)} configurations and the dashboard's queries pass")


if __name__ == "__main__":
    main()
