#!/usr/bin/env python3
"""Static checks of everything under deploy/ and of the Dockerfile (CTest: deploy_manifests).

No container engine or cluster runs in CI, so this renders the kustomize overlays with a small
renderer of its own (only the features deploy/k8s uses; anything else is refused), checks the
objects a cluster would get, and checks that the Dockerfile only runs scripts CI runs too. When a
`kubectl` with kustomize is on PATH, the renderer's object set is compared with its output.

    check_manifests.py [--repo DIR] [--deep-compare]

Prints each check; exits 1 with a precise message on the first failure.
"""
import argparse
import copy
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import yaml

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "CustomResourceDefinition", "PriorityClass"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Strategic-merge keys of the lists the patches touch; other lists are replaced.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "ports": "containerPort"}
KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "namespace", "labels", "commonLabels",
                      "patches", "images", "replicas"}
# Plain commands a Dockerfile RUN may use besides scripts/.
PLAIN_COMMANDS = {"useradd", "groupadd", "mkdir", "chown", "chmod", "ln", "rm", "true", "echo",
                  "install", "test", "cp", "mv", "touch"}
REQUIRED_DASHBOARD_EXPRS = [
    "rate(logn_requests_total[1m])",
    "logn_request_duration_seconds_bucket",
    "logn_queue_duration_seconds_bucket",
    "logn_inference_duration_seconds_bucket",
    "logn_batch_images_bucket",
    "rate(logn_calibration_rows_total[1m])",
    "logn_calibration_jobs",
    "logn_stats_active_version",
    "logn_model_info",
    "logn_build_info",
]


class CheckError(Exception):
    pass


def fail(message):
    raise CheckError(message)


def ok(message):
    print(f"ok: {message}")


def require(condition, message):
    if not condition:
        fail(message)


# ---------------------------------------------------------------------------------------------
# Loading


def load_yaml_docs(path):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        fail(f"{path}: invalid YAML: {e}")


def parse_all_files(repo):
    deploy = os.path.join(repo, "deploy")
    count = {"yaml": 0, "json": 0}
    for root, _, files in os.walk(deploy):
        for name in sorted(files):
            path = os.path.join(root, name)
            if name.endswith((".yaml", ".yml")):
                load_yaml_docs(path)
                count["yaml"] += 1
            elif name.endswith(".json"):
                try:
                    with open(path) as f:
                        json.load(f)
                except json.JSONDecodeError as e:
                    fail(f"{path}: invalid JSON: {e}")
                count["json"] += 1
    require(count["yaml"] > 0, f"no YAML files under {deploy}")
    ok(f"parsed {count['yaml']} YAML and {count['json']} JSON files under deploy/")


# ---------------------------------------------------------------------------------------------
# The kustomize renderer


def strategic_merge(base, patch, key=None):
    """Strategic merge patch: maps merge, null deletes, known lists merge by their key."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        merge_key = MERGE_KEYS[key]
        if all(isinstance(i, dict) and merge_key in i for i in base + patch):
            out, added = [copy.deepcopy(i) for i in base], []
            for item in patch:
                for n, existing in enumerate(out):
                    if existing[merge_key] == item[merge_key]:
                        out[n] = strategic_merge(existing, item)
                        break
                else:
                    added.append(copy.deepcopy(item))
            return added + out  # kustomize puts new items first
    return copy.deepcopy(patch)


def pod_specs(obj):
    spec = obj.get("spec", {})
    if obj.get("kind") in WORKLOADS:
        yield spec.get("template", {}).get("spec", {})
    elif obj.get("kind") == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    elif obj.get("kind") == "Pod":
        yield spec


def containers_of(obj):
    for pod in pod_specs(obj):
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            yield c


def split_image(image):
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    name, tag = image, None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = image.rsplit(":", 1)
    return name, tag, digest


def render(directory, stack=()):
    """Renders the kustomization in directory; returns a list of objects."""
    directory = os.path.normpath(directory)
    require(directory not in stack, f"kustomization cycle through {directory}")
    path = os.path.join(directory, "kustomization.yaml")
    require(os.path.isfile(path), f"{directory}: no kustomization.yaml")
    docs = load_yaml_docs(path)
    require(len(docs) == 1 and isinstance(docs[0], dict), f"{path}: expected one mapping")
    k = docs[0]
    unknown = set(k) - KUSTOMIZATION_KEYS
    require(not unknown, f"{path}: kustomize features {sorted(unknown)} are not supported by "
                         f"tests/deploy/check_manifests.py (keep to {sorted(KUSTOMIZATION_KEYS)})")

    objects = []
    for res in k.get("resources", []):
        res_path = os.path.normpath(os.path.join(directory, res))
        if os.path.isdir(res_path):
            objects += render(res_path, stack + (directory,))
        elif os.path.isfile(res_path):
            for doc in load_yaml_docs(res_path):
                require(isinstance(doc, dict) and "kind" in doc and "metadata" in doc,
                        f"{res_path}: a document without kind/metadata")
                objects.append(doc)
        else:
            fail(f"{path}: resource {res} does not exist")
    seen = set()
    for o in objects:
        ident = (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
        require(ident not in seen, f"{path}: duplicate object {ident}")
        seen.add(ident)

    # Transformers, in kustomize's order: patches, namespace, labels, replicas, images.
    for p in k.get("patches", []):
        require(set(p) == {"path"}, f"{path}: only `patches: - path: FILE` is supported, got {p}")
        patch_path = os.path.join(directory, p["path"])
        for patch in load_yaml_docs(patch_path):
            kind, name = patch.get("kind"), patch.get("metadata", {}).get("name")
            targets = [i for i, o in enumerate(objects)
                       if o["kind"] == kind and o["metadata"]["name"] == name]
            require(len(targets) == 1, f"{patch_path}: patch target {kind}/{name} matches "
                                       f"{len(targets)} objects")
            objects[targets[0]] = strategic_merge(objects[targets[0]], patch)

    namespace = k.get("namespace")
    if namespace:
        for o in objects:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = namespace

    label_sets = []
    for entry in k.get("labels", []):
        extra = set(entry) - {"pairs", "includeSelectors", "includeTemplates"}
        require(not extra, f"{path}: labels options {sorted(extra)} not supported")
        label_sets.append((entry["pairs"], entry.get("includeSelectors", False),
                           entry.get("includeTemplates", False)))
    if "commonLabels" in k:
        label_sets.append((k["commonLabels"], True, True))
    for pairs, selectors, templates in label_sets:
        for o in objects:
            o["metadata"].setdefault("labels", {}).update(pairs)
            spec = o.get("spec", {})
            if (templates or selectors) and o["kind"] in WORKLOADS and "template" in spec:
                spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            if selectors:
                if o["kind"] == "Service":
                    spec.setdefault("selector", {}).update(pairs)
                elif o["kind"] in WORKLOADS - {"Job"} or o["kind"] == "PodDisruptionBudget":
                    spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)

    for r in k.get("replicas", []):
        matched = [o for o in objects if o["kind"] in {"Deployment", "StatefulSet", "ReplicaSet"}
                   and o["metadata"]["name"] == r["name"]]
        require(matched, f"{path}: replicas: no workload named {r['name']}")
        for o in matched:
            o["spec"]["replicas"] = r["count"]

    for img in k.get("images", []):
        extra = set(img) - {"name", "newName", "newTag", "digest"}
        require(not extra, f"{path}: images options {sorted(extra)} not supported")
        for o in objects:
            for c in containers_of(o):
                name, tag, digest = split_image(c["image"])
                if name != img["name"]:
                    continue
                name = img.get("newName", name)
                if "newTag" in img:
                    tag = str(img["newTag"])
                if "digest" in img:
                    digest = img["digest"]
                c["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    return objects


def kubectl_kustomize(directory):
    """kubectl's rendering, or None when there is no kubectl with kustomize."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    try:
        out = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        if "unknown command" in out.stderr:
            return None
        fail(f"kubectl kustomize {directory} failed: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


def object_summary(objects):
    return sorted((o["kind"], o["metadata"].get("namespace") or "", o["metadata"]["name"],
                   o.get("spec", {}).get("replicas") if isinstance(o.get("spec"), dict) else None)
                  for o in objects)


def compare_with_kubectl(directory, objects, deep, where):
    theirs = kubectl_kustomize(directory)
    if theirs is None:
        return
    mine, ref = object_summary(objects), object_summary(theirs)
    if mine != ref:
        fail(f"{where}: our renderer and kubectl kustomize disagree on the objects "
             f"(kind, namespace, name, replicas):\n  ours only: {sorted(set(mine) - set(ref))}\n"
             f"  kubectl only: {sorted(set(ref) - set(mine))}")
    if deep:
        index = {(o["kind"], o["metadata"]["name"]): o for o in theirs}
        for o in objects:
            other = index[(o["kind"], o["metadata"]["name"])]
            if o != other:
                fail(f"{where}: {o['kind']}/{o['metadata']['name']} differs from kubectl's:\n"
                     f"ours:\n{yaml.safe_dump(o)}\nkubectl:\n{yaml.safe_dump(other)}")
    ok(f"{where}: {len(objects)} objects match kubectl kustomize"
       + (" exactly" if deep else " (kind, namespace, name, replicas)"))


# ---------------------------------------------------------------------------------------------
# Object checks


def server_flags(repo):
    main_cc = os.path.join(repo, "server", "grpc", "main.cc")
    with open(main_cc) as f:
        names = set(re.findall(r"ABSL_FLAG\(\s*[\w:<>]+\s*,\s*(\w+)\s*,", f.read()))
    require("listen" in names and "model" in names, f"{main_cc}: found no ABSL_FLAG definitions")
    return names


def check_server_args(args, flags, where):
    for a in args:
        require(a.startswith("--"), f"{where}: argument {a!r} is not a --flag=value")
        m = re.match(r"--([\w-]+)(=|$)", a)
        require(m and m.group(1) in flags, f"{where}: {a!r}: logn_server has no flag "
                                           f"--{m.group(1) if m else a} (server/grpc/main.cc)")


def flag_value(args, name):
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def parse_duration_seconds(text, where):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text or "")
    require(m, f"{where}: cannot parse duration {text!r}")
    return float(m.group(1)) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def find(objects, kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects, kind, name, where):
    found = find(objects, kind, name)
    require(len(found) == 1, f"{where}: expected one {kind}/{name}, found {len(found)}")
    return found[0]


def check_image_pinned(image, where):
    name, tag, digest = split_image(image)
    require(digest or (tag and tag != "latest"),
            f"{where}: image {image!r} is not pinned by a tag (or digest)")


def check_env_refs(objects, container, where):
    env = {e["name"]: e for e in container.get("env", [])}
    for a in container.get("args", []) + container.get("command", []):
        for var in re.findall(r"\$\((\w+)\)", a):
            require(var in env, f"{where}: {a!r} uses $({var}) but the container defines no env "
                                f"{var} (Kubernetes would pass it literally)")
    for e in env.values():
        ref = e.get("valueFrom", {})
        for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            if key in ref:
                target = one(objects, kind, ref[key]["name"], f"{where}: env {e['name']}")
                data = {**target.get("data", {}), **target.get("stringData", {})}
                require(ref[key]["key"] in data, f"{where}: env {e['name']}: {kind} "
                                                 f"{ref[key]['name']} has no key {ref[key]['key']}")


def check_deployment(objects, flags, repo, where):
    d = one(objects, "Deployment", "logn-serve", where)
    pod = d["spec"]["template"]["spec"]
    containers = pod["containers"]
    require(len(containers) == 1, f"{where}: Deployment logn-serve should have one container")
    c = containers[0]
    w = f"{where}: Deployment logn-serve container {c['name']}"
    args = c.get("args", [])
    check_server_args(args, flags, w)
    check_env_refs(objects, c, w)
    for flag in ("listen", "metrics_listen", "model", "store", "admin_token_file", "drain_timeout"):
        require(flag_value(args, flag) is not None, f"{w}: missing --{flag}=")
    require(flag_value(args, "listen").endswith(":8500"), f"{w}: --listen should use port 8500")
    require(flag_value(args, "metrics_listen").endswith(":8501"),
            f"{w}: --metrics_listen should use port 8501")
    require(flag_value(args, "store") == "$(LOGN_STORE_URL)",
            f"{w}: --store should come from the Secret as $(LOGN_STORE_URL)")
    store_env = next(e for e in c["env"] if e["name"] == "LOGN_STORE_URL")
    require(store_env["valueFrom"].get("secretKeyRef", {}).get("key") == "store-url",
            f"{w}: LOGN_STORE_URL should come from the Secret key store-url")

    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        p = c.get(probe)
        require(p and p.get("grpc", {}).get("port") == 8500,
                f"{w}: {probe} should be a native gRPC probe on port 8500")
    startup = c["startupProbe"]
    budget = startup.get("failureThreshold", 3) * startup.get("periodSeconds", 10)
    require(budget >= 120, f"{w}: startupProbe allows only {budget}s for the model load (< 120s)")

    res = c.get("resources", {})
    for part in ("requests", "limits"):
        require({"cpu", "memory"} <= set(res.get(part, {})), f"{w}: resources.{part} needs cpu "
                                                               f"and memory")
    pre_stop = c.get("lifecycle", {}).get("preStop")
    require(pre_stop, f"{w}: lifecycle.preStop is missing")
    if "sleep" in pre_stop:
        pre_stop_s = float(pre_stop["sleep"]["seconds"])
    else:
        cmd = pre_stop.get("exec", {}).get("command", [])
        require(len(cmd) == 2 and cmd[0].endswith("sleep"), f"{w}: preStop should sleep")
        pre_stop_s = float(cmd[1])
    drain_s = parse_duration_seconds(flag_value(args, "drain_timeout"), w)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    require(grace >= drain_s + pre_stop_s, f"{where}: terminationGracePeriodSeconds {grace} < "
                                           f"drain {drain_s}s + preStop {pre_stop_s}s")

    sc = c.get("securityContext", {})
    pod_sc = pod.get("securityContext", {})
    require(sc.get("readOnlyRootFilesystem") is True, f"{w}: readOnlyRootFilesystem must be true")
    require(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True,
            f"{w}: runAsNonRoot must be true")
    require(sc.get("runAsUser", pod_sc.get("runAsUser")) == 10001, f"{w}: runAsUser must be 10001")
    require(sc.get("allowPrivilegeEscalation") is False, f"{w}: allowPrivilegeEscalation: false")
    require(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{w}: capabilities.drop [ALL]")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    require("/tmp" in mounts and "emptyDir" in volumes.get(mounts["/tmp"], {}),
            f"{w}: /tmp should be an emptyDir (the root filesystem is read-only)")
    for m in c.get("volumeMounts", []):
        require(m["name"] in volumes, f"{w}: volumeMount {m['name']} has no volume")
    token = flag_value(args, "admin_token_file")
    token_dir, token_file = os.path.split(token)
    require(token_dir in mounts, f"{w}: --admin_token_file={token} is not on a mounted volume")
    secret_vol = volumes[mounts[token_dir]].get("secret", {})
    secret = one(objects, "Secret", secret_vol.get("secretName"), w)
    items = {i["path"]: i["key"] for i in secret_vol.get("items", [])} or \
        {k: k for k in {**secret.get("data", {}), **secret.get("stringData", {})}}
    require(token_file in items and items[token_file] == "admin-token",
            f"{w}: {token} should be the Secret key admin-token")

    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    require(ports.get("grpc") == 8500 and ports.get("metrics") == 8501,
            f"{w}: ports grpc 8500 and metrics 8501 expected, got {ports}")
    labels = d["spec"]["template"]["metadata"].get("labels", {})
    annotations = d["spec"]["template"]["metadata"].get("annotations", {})
    require(labels.get("app.kubernetes.io/name") == "logn-serve",
            f"{where}: pod template needs label app.kubernetes.io/name=logn-serve")
    require(annotations.get("prometheus.io/scrape") == "true" and
            annotations.get("prometheus.io/port") == "8501",
            f"{where}: pod template needs prometheus.io/scrape and prometheus.io/port=8501")
    selector = d["spec"]["selector"]["matchLabels"]
    require(all(labels.get(k) == v for k, v in selector.items()),
            f"{where}: Deployment selector {selector} does not match its pod labels")

    model = flag_value(args, "model")
    if model.startswith("$("):
        env = next(e for e in c["env"] if e["name"] == model[2:-1])
        ref = env["valueFrom"]["configMapKeyRef"]
        model = one(objects, "ConfigMap", ref["name"], w)["data"][ref["key"]]
    check_image_model_path(model, repo, w)
    ok(f"{where}: Deployment logn-serve: gRPC probes on 8500, resources, preStop {pre_stop_s:g}s, "
       f"grace {grace}s >= drain {drain_s:g}s + preStop, non-root read-only, flags known")
    return d, c


def check_image_model_path(model, repo, where):
    m = re.fullmatch(r"/opt/logn/models/([\w.-]+)/([\w.-]+\.pt)", model)
    require(m, f"{where}: model {model!r} is not one of the image's /opt/logn/models/*/*.pt")
    require(os.path.isfile(os.path.join(repo, "models", m.group(1), m.group(2))),
            f"{where}: model {model}: models/{m.group(1)}/{m.group(2)} does not exist")


def store_url(objects, where):
    secret = one(objects, "Secret", "logn-serve-secrets", where)
    data = {**secret.get("data", {}), **secret.get("stringData", {})}
    require({"admin-token", "store-url"} <= set(data),
            f"{where}: Secret logn-serve-secrets needs keys admin-token and store-url")
    return data["store-url"]


def check_common(objects, where):
    for kind, name in (("Service", "logn-serve"), ("Service", "logn-serve-replicas"),
                       ("HorizontalPodAutoscaler", "logn-serve"),
                       ("PodDisruptionBudget", "logn-serve"), ("ConfigMap", "logn-serve-config"),
                       ("Secret", "logn-serve-secrets")):
        one(objects, kind, name, where)
    svc = one(objects, "Service", "logn-serve", where)
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    require(ports.get("grpc", {}).get("port") == 8500 and
            ports["grpc"].get("appProtocol") == "grpc",
            f"{where}: Service logn-serve needs port grpc 8500 with appProtocol grpc")
    require(ports.get("metrics", {}).get("port") == 8501, f"{where}: Service metrics port 8501")
    headless = one(objects, "Service", "logn-serve-replicas", where)
    require(headless["spec"].get("clusterIP") == "None", f"{where}: logn-serve-replicas must be "
                                                         f"headless (clusterIP: None)")
    require(headless["spec"].get("publishNotReadyAddresses", False) is False,
            f"{where}: logn-serve-replicas must not publish not-ready addresses")
    d = one(objects, "Deployment", "logn-serve", where)
    pod_labels = d["spec"]["template"]["metadata"]["labels"]
    c = d["spec"]["template"]["spec"]["containers"][0]
    port_names = {p["name"] for p in c["ports"]} | {p["containerPort"] for p in c["ports"]}
    for s in (svc, headless):
        sel = s["spec"]["selector"]
        require(all(pod_labels.get(k) == v for k, v in sel.items()),
                f"{where}: Service {s['metadata']['name']} selector {sel} selects no pod")
        for p in s["spec"]["ports"]:
            require(p.get("targetPort", p["port"]) in port_names,
                    f"{where}: Service {s['metadata']['name']} targetPort {p.get('targetPort')} "
                    f"is not a container port")
    hpa = one(objects, "HorizontalPodAutoscaler", "logn-serve", where)
    require(hpa["apiVersion"] == "autoscaling/v2", f"{where}: HPA should be autoscaling/v2")
    require(hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                              "name": "logn-serve"},
            f"{where}: HPA must scale Deployment logn-serve")
    cpu = [m for m in hpa["spec"].get("metrics", []) if m.get("type") == "Resource" and
           m["resource"]["name"] == "cpu"]
    require(cpu and cpu[0]["resource"]["target"].get("averageUtilization") == 70,
            f"{where}: HPA needs a CPU utilization target of 70 %")
    require(hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"],
            f"{where}: HPA minReplicas > maxReplicas")
    pdb = one(objects, "PodDisruptionBudget", "logn-serve", where)
    require("minAvailable" in pdb["spec"] or "maxUnavailable" in pdb["spec"],
            f"{where}: PDB needs minAvailable or maxUnavailable")
    require(all(pod_labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items()),
            f"{where}: PDB selector selects no pod")
    prom = [o for o in find(objects, "ConfigMap") if "prometheus.yml" in o.get("data", {})]
    require(prom, f"{where}: no ConfigMap with a prometheus.yml")
    check_k8s_prometheus(yaml.safe_load(prom[0]["data"]["prometheus.yml"]), where)
    for o in objects:
        for c in containers_of(o):
            check_image_pinned(c["image"], f"{where}: {o['kind']}/{o['metadata']['name']}")
    ok(f"{where}: Services (gRPC 8500 appProtocol grpc, metrics 8501), headless replicas Service, "
       f"HPA (CPU 70 %, {hpa['spec']['minReplicas']}..{hpa['spec']['maxReplicas']}), PDB, "
       f"ConfigMap, Secret, Prometheus ConfigMap; every image pinned")
    return hpa


def check_k8s_prometheus(config, where):
    jobs = config.get("scrape_configs", [])
    for job in jobs:
        if not job.get("kubernetes_sd_configs"):
            continue
        if not any(sd.get("role") == "pod" for sd in job["kubernetes_sd_configs"]):
            continue
        keeps = {(tuple(r.get("source_labels", [])), str(r.get("regex")))
                 for r in job.get("relabel_configs", []) if r.get("action") == "keep"}
        if ((("__meta_kubernetes_pod_label_app_kubernetes_io_name",), "logn-serve") in keeps and
                (("__meta_kubernetes_pod_container_port_number",), "8501") in keeps):
            return
    fail(f"{where}: the Prometheus ConfigMap needs a kubernetes_sd_configs pod job keeping "
         f"app.kubernetes.io/name=logn-serve and container port 8501")


def check_overlays(repo, flags, deep):
    k8s = os.path.join(repo, "deploy", "k8s")
    rendered = {}
    for overlay in ("dev", "prod"):
        directory = os.path.join(k8s, "overlays", overlay)
        objects = render(directory)
        where = f"overlays/{overlay}"
        ok(f"{where}: rendered {len(objects)} objects with our kustomize renderer")
        compare_with_kubectl(directory, objects, deep, where)
        d, c = check_deployment(objects, flags, repo, where)
        hpa = check_common(objects, where)
        url = store_url(objects, where)
        namespace = d["metadata"].get("namespace")
        require(namespace and one(objects, "Namespace", namespace, where),
                f"{where}: objects should be in a namespace the overlay creates")
        if overlay == "dev":
            require(d["spec"].get("replicas") == 1, f"{where}: dev should run 1 replica")
            require(hpa["spec"]["maxReplicas"] == 1, f"{where}: dev HPA maxReplicas should be 1")
            require(url.startswith("sqlite:///var/lib/logn/"), f"{where}: dev store should be "
                                                               f"SQLite under /var/lib/logn")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
            claim = volumes.get(mounts.get("/var/lib/logn"), {}).get("persistentVolumeClaim", {})
            require(claim, f"{where}: /var/lib/logn should be a PVC")
            one(objects, "PersistentVolumeClaim", claim["claimName"], where)
            require(not find(objects, "StatefulSet"), f"{where}: dev should have no PostgreSQL")
            require(d["spec"].get("strategy", {}).get("type") == "Recreate",
                    f"{where}: SQLite on a ReadWriteOnce PVC needs strategy Recreate")
            ok(f"{where}: 1 replica, HPA max 1, store {url} on PVC {claim['claimName']}")
        else:
            require(d["spec"].get("replicas") == 3, f"{where}: prod should run 3 replicas")
            require(hpa["spec"]["minReplicas"] == 3, f"{where}: prod HPA minReplicas should be 3")
            m = re.fullmatch(r"postgres(?:ql)?://[^@/]+@([\w.-]+):(\d+)/\w+", url)
            require(m, f"{where}: prod store should be a postgres://user:pass@host:port/db URL, "
                       f"got {url}")
            sts = find(objects, "StatefulSet")
            require(len(sts) == 1 and sts[0]["spec"].get("volumeClaimTemplates"),
                    f"{where}: prod needs the PostgreSQL StatefulSet with volumeClaimTemplates")
            pg = sts[0]
            require(any(c["image"].startswith("postgres:15") for c in containers_of(pg)),
                    f"{where}: PostgreSQL should be postgres:15")
            svc = one(objects, "Service", m.group(1).split(".")[0], f"{where}: store host")
            require(svc["spec"]["selector"].items() <=
                    pg["spec"]["template"]["metadata"]["labels"].items(),
                    f"{where}: Service {m.group(1)} does not select the PostgreSQL pods")
            require(any(p["port"] == int(m.group(2)) for p in svc["spec"]["ports"]),
                    f"{where}: Service {m.group(1)} has no port {m.group(2)}")
            pg_secret = [one(objects, "Secret", e["secretRef"]["name"], where)
                         for c in containers_of(pg) for e in c.get("envFrom", [])
                         if "secretRef" in e]
            if pg_secret:
                pw = pg_secret[0].get("stringData", {}).get("POSTGRES_PASSWORD")
                require(pw is None or f":{pw}@" in url,
                        f"{where}: store-url's password differs from the PostgreSQL Secret's")
            ok(f"{where}: 3 replicas, HPA min 3, store {url}, PostgreSQL StatefulSet "
               f"{pg['metadata']['name']} with volumeClaimTemplates")
        rendered[overlay] = objects
    return rendered


def check_job(repo):
    path = os.path.join(repo, "deploy", "k8s", "jobs", "calibrate-sharded.yaml")
    docs = load_yaml_docs(path)
    jobs = [d for d in docs if d.get("kind") == "Job"]
    require(len(jobs) == 1, f"{path}: expected one Job")
    job = jobs[0]
    spec = job["spec"]
    require(spec.get("completionMode") == "Indexed", f"{path}: completionMode must be Indexed")
    n = spec.get("completions")
    require(n and spec.get("parallelism") == n, f"{path}: completions and parallelism must match")
    c = job["spec"]["template"]["spec"]["containers"][0]
    check_image_pinned(c["image"], path)
    cmd = c.get("command", []) + c.get("args", [])
    require(cmd[:2] == ["/opt/logn/bin/logn", "calibrate"], f"{path}: should run logn calibrate")
    def arg(name):
        require(name in cmd, f"{path}: logn calibrate needs {name}")
        i = cmd.index(name)
        return cmd[i + 1] if i + 1 < len(cmd) else ""
    require(arg("--shard") == f"$(JOB_COMPLETION_INDEX)/{n}",
            f"{path}: --shard should be $(JOB_COMPLETION_INDEX)/{n}")
    require("--partial" in cmd and "--resume" in cmd, f"{path}: needs --partial and --resume")
    require("$(JOB_COMPLETION_INDEX)" in arg("--job-id"), f"{path}: --job-id per shard")
    require(arg("--checkpoint-every").isdigit(), f"{path}: --checkpoint-every N")
    require(arg("--server").endswith(":8500"), f"{path}: --server should be a :8500 target")
    arg("--dataset")
    arg("--images")
    cli_source = ""
    for root, _, files in os.walk(os.path.join(repo, "client", "cli")):  # one file per command
        for name in files:
            if name.endswith(".cc") and not name.endswith("_test.cc"):
                with open(os.path.join(root, name)) as f:
                    cli_source += f.read()
    for a in cmd:
        if a.startswith("--"):
            require(f'"{a}"' in cli_source, f"{path}: the logn CLI has no flag {a}")
    env = {e["name"] for e in c.get("env", [])}
    for a in cmd:
        for var in re.findall(r"\$\((\w+)\)", a):
            require(var in env, f"{path}: {a!r} uses $({var}) without an env {var}")
    with open(path) as f:
        require("logn stats merge" in f.read(), f"{path}: should show the merge command")
    ok(f"jobs/calibrate-sharded.yaml: Indexed Job, {n} shards, --partial --resume, image pinned")


# ---------------------------------------------------------------------------------------------
# Compose and Grafana


def check_compose(repo, flags):
    base = os.path.join(repo, "deploy", "compose")
    path = os.path.join(base, "docker-compose.yml")
    compose = load_yaml_docs(path)[0]
    services = compose.get("services", {})
    require({"logn", "postgres", "prometheus", "grafana"} <= set(services),
            f"{path}: needs services logn, postgres, prometheus, grafana")
    logn = services["logn"]
    build = logn.get("build", {})
    require(os.path.normpath(os.path.join(base, build.get("context", ""))) == os.path.normpath(repo)
            and build.get("dockerfile", "Dockerfile") == "Dockerfile",
            f"{path}: logn should build the repository's Dockerfile")
    command = logn.get("command", [])
    require(isinstance(command, list), f"{path}: logn command should be a list of --flag=value")
    check_server_args(command, flags, f"{path}: logn command")
    check_image_model_path(flag_value(command, "model") or "", repo, f"{path}: logn")
    url = flag_value(command, "store") or ""
    m = re.fullmatch(r"postgres(?:ql)?://([^:@/]+):([^@/]+)@([\w.-]+):(\d+)/(\w+)", url)
    require(m and m.group(3) == "postgres", f"{path}: logn --store should be a postgres:// URL "
                                            f"of the postgres service, got {url!r}")
    pg = services["postgres"]
    require(str(pg.get("image", "")).startswith("postgres:15"), f"{path}: postgres:15 expected")
    env = pg.get("environment", {})
    require((env.get("POSTGRES_USER"), env.get("POSTGRES_PASSWORD"), env.get("POSTGRES_DB")) ==
            (m.group(1), m.group(2), m.group(5)), f"{path}: --store URL does not match the "
                                                  f"postgres service's user/password/db")
    volumes = [v.split(":")[0] for v in pg.get("volumes", [])]
    require(any(v in compose.get("volumes", {}) for v in volumes),
            f"{path}: postgres needs a named volume")
    for name, svc in services.items():
        if "image" in svc:
            check_image_pinned(svc["image"], f"{path}: service {name}")

    prom = load_yaml_docs(os.path.join(base, "prometheus.yml"))[0]
    targets = [t for job in prom.get("scrape_configs", [])
               for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
    require("logn:8501" in targets, f"{base}/prometheus.yml: should scrape logn:8501")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"].get("volumes", [])}
    require(os.path.normpath(os.path.join(base, mounts.get("/etc/prometheus/prometheus.yml", "")))
            == os.path.join(base, "prometheus.yml"), f"{path}: prometheus should mount "
                                                     f"./prometheus.yml")

    gmounts = {v.split(":")[1]: os.path.normpath(os.path.join(base, v.split(":")[0]))
               for v in services["grafana"].get("volumes", [])}
    prov = gmounts.get("/etc/grafana/provisioning")
    require(prov and os.path.isdir(prov), f"{path}: grafana should mount its provisioning dir")
    datasources = [d for f in sorted(os.listdir(os.path.join(prov, "datasources")))
                   for d in load_yaml_docs(os.path.join(prov, "datasources", f))[0]["datasources"]]
    require(any(d["type"] == "prometheus" and d["url"] == "http://prometheus:9090"
                for d in datasources), f"{prov}: needs a Prometheus datasource at prometheus:9090")
    providers = [p for f in sorted(os.listdir(os.path.join(prov, "dashboards")))
                 for p in load_yaml_docs(os.path.join(prov, "dashboards", f))[0]["providers"]]
    require(providers, f"{prov}/dashboards: no dashboard provider")
    dash_dir = gmounts.get(providers[0]["options"]["path"])
    require(dash_dir, f"{path}: grafana does not mount the provider's path "
                      f"{providers[0]['options']['path']}")
    dash_path = os.path.join(dash_dir, "logn-serve.json")
    require(os.path.isfile(dash_path), f"{dash_path} missing")
    check_dashboard(dash_path, {d.get("uid") for d in datasources})
    ok("compose: logn (Dockerfile, postgres:// store), postgres:15 with a named volume, "
       "Prometheus scraping logn:8501, Grafana provisioning the dashboard")


def check_dashboard(path, datasource_uids):
    with open(path) as f:
        dash = json.load(f)
    exprs = []
    for p in dash.get("panels", []):
        require(p.get("datasource", {}).get("uid") in datasource_uids,
                f"{path}: panel {p.get('title')!r} uses an unprovisioned datasource")
        exprs += [t.get("expr", "") for t in p.get("targets", [])]
    for needle in REQUIRED_DASHBOARD_EXPRS:
        require(any(needle in e for e in exprs), f"{path}: no panel queries {needle}")
    for needle in ("logn_request_duration_seconds_bucket", "logn_queue_duration_seconds_bucket",
                   "logn_inference_duration_seconds_bucket", "logn_batch_images_bucket"):
        require(any(needle in e and "histogram_quantile" in e for e in exprs),
                f"{path}: {needle} should be shown with histogram_quantile")
    for q in ("0.5", "0.9", "0.99"):
        require(any(f"histogram_quantile({q}," in e and "logn_request_duration_seconds_bucket" in e
                    and "method" in e for e in exprs), f"{path}: request latency p{q} by method")
    for e in exprs:
        require(e.count("(") == e.count(")"), f"{path}: unbalanced parentheses in {e!r}")
    ok(f"dashboard: {len(dash['panels'])} panels, {len(exprs)} queries cover every required metric")


# ---------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions(path):
    with open(path) as f:
        lines = f.read().split("\n")
    out, buf = [], ""
    for line in lines:
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def ci_scripts(repo):
    """Scripts CI runs: from .ci/run, transitively, plus those the CTest files name."""
    found, todo = set(), [os.path.join(repo, ".ci", "run")]
    pattern = re.compile(r"scripts/([\w.-]+)")
    while todo:
        path = todo.pop()
        with open(path) as f:
            for name in pattern.findall(f.read()):
                script = os.path.join(repo, "scripts", name)
                if name not in found and os.path.isfile(script):
                    found.add(name)
                    todo.append(script)
    for root, _, files in os.walk(os.path.join(repo, "tests")):
        if "CMakeLists.txt" in files:
            with open(os.path.join(root, "CMakeLists.txt")) as f:
                for name in pattern.findall(f.read()):
                    if os.path.isfile(os.path.join(repo, "scripts", name)):
                        found.add(name)
    return found


def dockerignored(repo, relpath):
    path = os.path.join(repo, ".dockerignore")
    if not os.path.isfile(path):
        return False
    excluded = False
    with open(path) as f:
        for line in f:
            pat = line.strip()
            if not pat or pat.startswith("#"):
                continue
            negate = pat.startswith("!")
            pat = pat.lstrip("!").strip("/")
            parts = relpath.split("/")
            prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            if pat.startswith("**/"):
                hit = any(fnmatch.fnmatchcase(p.split("/")[-1], pat[3:]) or
                          fnmatch.fnmatchcase(p, pat[3:]) for p in prefixes)
            else:
                hit = any(fnmatch.fnmatchcase(p, pat) for p in prefixes)
            if hit:
                excluded = not negate
    return excluded


def check_dockerfile(repo, flags):
    path = os.path.join(repo, "Dockerfile")
    require(os.path.isfile(path), f"{path} missing")
    instructions = dockerfile_instructions(path)
    ci = ci_scripts(repo)
    require({"test", "install-deps"} <= ci, f".ci/run should reach scripts/test and install-deps")
    stages = []
    for word, rest in instructions:
        if word == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            require(m, f"{path}: cannot parse FROM {rest}")
            stages.append({"image": m.group(1), "name": m.group(2), "ins": [], "workdir": "/"})
        else:
            require(stages, f"{path}: {word} before FROM")
            stages[-1]["ins"].append((word, rest))
    require(len(stages) >= 2, f"{path}: should be multi-stage (build + runtime)")
    for s in stages:
        require(s["image"] == "debian:bookworm-slim",
                f"{path}: every stage should be FROM debian:bookworm-slim, got {s['image']}")
    names = {s["name"] for s in stages if s["name"]}

    for s in stages:
        copies = {}  # image path -> repo path
        workdir = "/"
        for word, rest in s["ins"]:
            if word == "WORKDIR":
                workdir = os.path.normpath(os.path.join(workdir, rest))
            elif word in ("COPY", "ADD"):
                words = shlex.split(rest)
                opts = [w for w in words if w.startswith("--")]
                words = [w for w in words if not w.startswith("--")]
                if any(o.startswith("--from=") for o in opts):
                    src_stage = next(o for o in opts if o.startswith("--from="))[7:]
                    require(src_stage in names, f"{path}: COPY --from={src_stage}: no such stage")
                    continue
                require(word == "COPY", f"{path}: use COPY, not ADD")
                *srcs, dest = words
                dest_abs = os.path.normpath(os.path.join(workdir, dest))
                for src in srcs:
                    src = os.path.normpath(src)
                    require(os.path.exists(os.path.join(repo, src)), f"{path}: COPY {src}: no "
                                                                     f"such file in the repo")
                    require(src == "." or not dockerignored(repo, src),
                            f"{path}: COPY {src} is excluded by .dockerignore")
                    if src == "." or os.path.isdir(os.path.join(repo, src)):
                        copies[dest_abs] = src
                    elif dest.endswith("/") or len(srcs) > 1:
                        copies[os.path.join(dest_abs, os.path.basename(src))] = src
                    else:
                        copies[dest_abs] = src
            elif word == "RUN":
                check_run(rest, workdir, copies, ci, repo, path)
    for needed in ("scripts/install-deps", "scripts/build", "scripts/stage-runtime",
                   "scripts/install-runtime-deps", "CMakeLists.txt", "models/demo_ce/model.pt",
                   "models/demo_logn/model.json"):
        require(not dockerignored(repo, needed), f".dockerignore excludes {needed}")

    final = stages[-1]["ins"]
    def last(word):
        found = [rest for w, rest in final if w == word]
        return found[-1] if found else None
    user = last("USER")
    require(user and user.split(":")[0] not in ("0", "root"), f"{path}: the runtime stage needs "
                                                              f"a non-root USER")
    require(user.split(":")[0] == "10001", f"{path}: USER should be uid 10001 (as the k8s "
                                           f"runAsUser), got {user}")
    entry = last("ENTRYPOINT")
    try:
        entry_list = json.loads(entry or "")
    except json.JSONDecodeError:
        entry_list = None
    require(isinstance(entry_list, list), f"{path}: ENTRYPOINT must be exec form (a JSON array)")
    require(entry_list == ["/opt/logn/bin/logn_server"],
            f"{path}: ENTRYPOINT should be [\"/opt/logn/bin/logn_server\"]")
    require(any(w == "COPY" and re.fullmatch(r"--from=\S+\s+/stage\s+/opt/logn/?", r)
                for w, r in final), f"{path}: runtime stage should COPY --from=build /stage "
                                    f"/opt/logn")
    cmd = json.loads(last("CMD") or "[]")
    check_server_args(cmd, flags, f"{path}: CMD")
    check_image_model_path(flag_value(cmd, "model") or "", repo, f"{path}: CMD")
    require(flag_value(cmd, "store") == "sqlite:///var/lib/logn/stats.db",
            f"{path}: CMD --store should default to sqlite:///var/lib/logn/stats.db")
    exposed = set(" ".join(r for w, r in final if w == "EXPOSE").split())
    require({"8500", "8501"} <= {p.split("/")[0] for p in exposed},
            f"{path}: EXPOSE 8500 8501 expected, got {sorted(exposed)}")
    health = last("HEALTHCHECK")
    require(health and " CMD " in f" {health} ", f"{path}: a HEALTHCHECK CMD is required")
    health_cmd = json.loads(health.split("CMD", 1)[1].strip())
    require(health_cmd[:2] == ["/opt/logn/bin/logn", "health"] and "--server" in health_cmd,
            f"{path}: HEALTHCHECK should run /opt/logn/bin/logn health --server ...")
    volume = " ".join(r for w, r in final if w == "VOLUME")
    require("/var/lib/logn" in volume, f"{path}: /var/lib/logn should be a VOLUME")
    ok(f"Dockerfile: {len(stages)} stages FROM debian:bookworm-slim, USER {user}, exec-form "
       f"ENTRYPOINT, EXPOSE 8500 8501, HEALTHCHECK, RUN only CI-run scripts ({', '.join(sorted(ci))})")


def check_run(rest, workdir, copies, ci, repo, path):
    words = rest.split()
    while words and words[0].startswith("--"):  # RUN --mount=... etc.
        words.pop(0)
    text = " ".join(words)
    require(not text.startswith("["), f"{path}: use shell-form RUN lines: {rest}")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token in ("&&", "||", ";", "|", "&"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    for command in commands:
        while command and re.fullmatch(r"\w+=.*", command[0]):
            command = command[1:]
        require(command, f"{path}: empty command in RUN {rest}")
        program = command[0]
        if "/" in program:
            image_path = os.path.normpath(os.path.join(workdir, program))
            repo_path = None
            for dest, src in copies.items():
                if image_path == dest:
                    repo_path = src
                elif image_path.startswith(dest.rstrip("/") + "/"):
                    repo_path = os.path.normpath(os.path.join(src, image_path[len(dest) + 1:]))
            require(repo_path, f"{path}: RUN {program}: not a file this stage COPYed in")
            m = re.fullmatch(r"scripts/([\w.-]+)", repo_path)
            require(m, f"{path}: RUN {program} ({repo_path}) is not under scripts/")
            script = os.path.join(repo, repo_path)
            require(os.path.isfile(script) and os.access(script, os.X_OK),
                    f"{path}: RUN {program}: {repo_path} is missing or not executable")
            require(m.group(1) in ci, f"{path}: RUN {program}: CI never runs {repo_path} (only "
                                      f"{sorted(ci)}), so a broken image would go unnoticed")
        else:
            require(program in PLAIN_COMMANDS, f"{path}: RUN {program}: only scripts/ and "
                                               f"{sorted(PLAIN_COMMANDS)} may run in the image "
                                               f"build (CI has no container engine)")


# ---------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", default=os.path.normpath(os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..")))
    parser.add_argument("--deep-compare", action="store_true",
                        help="with kubectl: require identical objects, not just the same set")
    args = parser.parse_args()
    repo = os.path.abspath(args.repo)
    try:
        flags = server_flags(repo)
        ok(f"logn_server accepts {len(flags)} flags (server/grpc/main.cc)")
        parse_all_files(repo)
        check_overlays(repo, flags, args.deep_compare)
        check_job(repo)
        check_compose(repo, flags)
        check_dockerfile(repo, flags)
    except CheckError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print("deploy manifests: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
