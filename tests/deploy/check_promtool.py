#!/usr/bin/env python3
"""CTest deploy_promtool: `promtool check config` on every Prometheus configuration we ship:
deploy/compose/prometheus.yml and the prometheus.yml of each ConfigMap under deploy/k8s.

Debian's prometheus is built without Kubernetes service discovery (NEWS.Debian: "Kubernetes
support has been completely removed"), so its promtool rejects kubernetes_sd_configs. When it
does, this script checks those blocks itself (known keys and role), swaps them for an equivalent
file_sd_configs and lets promtool check the rest; it also runs the relabel rules on sample pods
to show that exactly the logn-serve pods' metrics port is kept. The Grafana dashboard's queries
go through `promtool check rules` as recording rules, so a PromQL typo fails here too.

The alerting rules under deploy/prometheus/ (NAME.yml, e.g. the drift alerts) go through
`promtool check rules` and their unit tests (NAME.test.yml) through `promtool test rules`. Every
alert needs a test where it fires, with every annotation checked, and one where it stays quiet;
then each threshold and `for` of every alert is moved by half in either direction in a copy of
the rules, and the unit tests must fail on each copy, so a test that would pass whatever the
threshold is caught. deploy/compose/prometheus.yml's rule_files must be mounted into the
Prometheus container by docker-compose.yml; promtool checks the config with them at their host
paths.
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


def compose_config_with_host_rules(repo, tmp):
    """deploy/compose/prometheus.yml with each rule file at the host path docker-compose.yml
    mounts it from (promtool would look for the container's path here)."""
    compose_dir = os.path.join(repo, "deploy", "compose")
    with open(os.path.join(compose_dir, "prometheus.yml")) as f:
        config = yaml.safe_load(f)
    if not config.get("rule_files"):
        return os.path.join(compose_dir, "prometheus.yml")
    with open(os.path.join(compose_dir, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    mounts = {}
    for volume in compose["services"]["prometheus"].get("volumes", []):
        parts = volume.split(":")
        mounts[os.path.normpath(parts[1])] = os.path.normpath(os.path.join(compose_dir, parts[0]))
    host_rules = []
    for rule_file in config["rule_files"]:
        inside = os.path.normpath(os.path.join("/etc/prometheus", rule_file))
        if inside not in mounts:
            fail(f"deploy/compose/prometheus.yml: rule file {rule_file} is not mounted into the "
                 f"prometheus service by deploy/compose/docker-compose.yml (mounts: "
                 f"{sorted(mounts)})")
        if not os.path.isfile(mounts[inside]):
            fail(f"deploy/compose/docker-compose.yml mounts {mounts[inside]} as {inside}, but "
                 f"there is no such file")
        host_rules.append(mounts[inside])
    config["rule_files"] = host_rules
    path = os.path.join(tmp, "compose.prometheus.yml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    print(f"ok: deploy/compose/prometheus.yml's rule files are mounted: "
          f"{', '.join(os.path.relpath(r, repo) for r in host_rules)}")
    return path


def promtool_test(promtool, test_file):
    return subprocess.run([promtool, "test", "rules", test_file], text=True,
                          capture_output=True)


def check_alert_tests_cover(rules, tests, label):
    """Every alert fires in some test, with every annotation checked, and is quiet in another."""
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    fired, quiet = {}, set()
    for case in tests.get("tests", []):
        for check in case.get("alert_rule_test", []):
            name = check["alertname"]
            if name not in alerts:
                fail(f"{label}: tests alert {name}, which the rules do not define")
            if check.get("exp_alerts"):
                fired.setdefault(name, []).extend(check["exp_alerts"])
            else:
                quiet.add(name)
    for name, rule in alerts.items():
        if name not in fired or name not in quiet:
            fail(f"{label}: alert {name} needs a test where it fires and one where it does not")
        for exp in fired[name]:
            missing = set(rule.get("annotations", {})) - set(exp.get("exp_annotations", {}))
            if missing:
                fail(f"{label}: a test of {name} does not check annotations {sorted(missing)}")
            if not set(rule.get("labels", {}).items()) <= set(exp.get("exp_labels", {}).items()):
                fail(f"{label}: a test of {name} does not expect its labels {rule.get('labels')}")
    return alerts


def rule_mutations(rules):
    """(what, rules) copies with one threshold or `for` of one alert moved by half."""
    number = re.compile(r"(?<![\w.\"])(\d+(?:\.\d+)?)(?![\w.\"])")
    for g, group in enumerate(rules["groups"]):
        for r, rule in enumerate(group["rules"]):
            if "alert" not in rule:
                continue
            expr = rule["expr"]
            for m in number.finditer(expr):
                value = float(m.group(1))
                if value == 0:
                    continue
                for factor in (1.5, 1 / 1.5):
                    copy_ = copy.deepcopy(rules)
                    copy_["groups"][g]["rules"][r]["expr"] = (
                        expr[:m.start()] + repr(value * factor) + expr[m.end():])
                    yield (f"{rule['alert']}: {m.group(1)} -> {value * factor:g} in its expr",
                           copy_)
            if "for" in rule:
                seconds = parse_duration(rule["for"])
                for factor in (1.5, 1 / 1.5):
                    copy_ = copy.deepcopy(rules)
                    copy_["groups"][g]["rules"][r]["for"] = f"{int(seconds * factor)}s"
                    yield (f"{rule['alert']}: for {rule['for']} -> {int(seconds * factor)}s", copy_)


def parse_duration(text):
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if not re.fullmatch(r"(?:\d+[smhd])+", text):
        fail(f"cannot parse the duration {text!r}")
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", text))


def check_alert_rules(repo, promtool, tmp):
    """promtool check rules / test rules on deploy/prometheus, and the tests shown to bite."""
    rules_dir = os.path.join(repo, "deploy", "prometheus")
    rule_files = sorted(f for f in os.listdir(rules_dir)
                        if f.endswith(".yml") and not f.endswith(".test.yml"))
    if not rule_files:
        fail(f"no alerting rules under {rules_dir}")
    for name in rule_files:
        path = os.path.join(rules_dir, name)
        label = os.path.relpath(path, repo)
        out = subprocess.run([promtool, "check", "rules", path], text=True, capture_output=True)
        if out.returncode != 0:
            fail(f"promtool check rules {label}:\n{out.stdout}{out.stderr}")
        test_path = os.path.join(rules_dir, name[:-len(".yml")] + ".test.yml")
        if not os.path.isfile(test_path):
            fail(f"{label} has no unit tests ({os.path.relpath(test_path, repo)})")
        with open(path) as f:
            rules = yaml.safe_load(f)
        with open(test_path) as f:
            tests = yaml.safe_load(f)
        if tests.get("rule_files") != [name]:
            fail(f"{os.path.relpath(test_path, repo)} should test rule_files: [{name}]")
        out = promtool_test(promtool, test_path)
        if out.returncode != 0:
            fail(f"promtool test rules {os.path.relpath(test_path, repo)}:\n{out.stdout}"
                 f"{out.stderr}")
        alerts = check_alert_tests_cover(rules, tests, os.path.relpath(test_path, repo))
        print(f"ok: promtool check rules and test rules: {label} ({len(alerts)} alerts: "
              f"{', '.join(alerts)})")
        # The same tests against broken copies of the rules, next to a copy of the tests.
        mutant_dir = os.path.join(tmp, "mutants")
        os.makedirs(mutant_dir, exist_ok=True)
        shutil.copy(test_path, os.path.join(mutant_dir, os.path.basename(test_path)))
        caught = 0
        # First the unchanged rules, written as the copies are: they must pass, or every copy
        # would fail for the writing alone.
        for what, mutant in [(None, rules)] + list(rule_mutations(rules)):
            with open(os.path.join(mutant_dir, name), "w") as f:
                yaml.safe_dump(mutant, f, sort_keys=False)
            out = promtool_test(promtool, os.path.join(mutant_dir, os.path.basename(test_path)))
            if what is None:
                if out.returncode != 0:
                    fail(f"{label} rewritten by PyYAML fails its tests:\n{out.stdout}{out.stderr}")
                continue
            if out.returncode == 0:
                fail(f"{os.path.relpath(test_path, repo)} still passes with {what}: add a test "
                     f"on that side of the threshold")
            caught += 1
        print(f"ok: the tests fail on each of {caught} copies of {label} with a threshold or "
              f"`for` moved by half")


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

    with tempfile.TemporaryDirectory() as tmp:
        configs = [("deploy/compose/prometheus.yml",
                    compose_config_with_host_rules(args.repo, tmp))]
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
        check_alert_rules(args.repo, args.promtool, tmp)
    print(f"deploy_promtool: {len(configs)} configurations, the dashboard's queries and the "
          f"alerting rules pass")


if __name__ == "__main__":
    main()
