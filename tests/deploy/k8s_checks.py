"""The checks a reviewer makes on deploy/k8s, run on what `kubectl kustomize` renders for every
kustomization root (base, postgres, overlays/dev, overlays/prod) and on every plain manifest
(jobs/calibrate-sharded.yaml). Each check raises CheckError with a precise message; every one is
shown to fire by manifest_mutations.py on a broken copy of deploy/.

    check_k8s(deploy_dir, repo, kubectl) -> {name: [objects]}
"""
import math
import os
import re

import yaml

from deploy_common import (containers_of, fail, find, kustomization_roots, ok, one,
                           parse_rendered, pod_labels, pod_specs, render_all, require, selects,
                           split_image)

# The Secrets the manifests use but never contain: docs/deploy.md tells how to create each one,
# with these keys, before (or right after) `kubectl apply -k`.
EXTERNAL_SECRETS = {"logn-serve-secrets": {"admin-token", "store-url"},
                    "logn-postgres": {"password"}}
CREDENTIAL_ENV = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|PRIVATE_KEY|API_KEY|CREDENTIAL", re.I)
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I)
CREDENTIAL_ARG = re.compile(r"^--?(token|password|passwd|admin[-_]token|secret)(=|$)", re.I)
SERVER = "logn-serve"          # the Deployment, its container and its Services
SERVER_UID = 10001             # the Dockerfile's USER
MIN_STARTUP_SECONDS = 120      # a model load
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}


# ---------------------------------------------------------------------------------------------
# Facts from the sources


def server_flags(repo):
    main_cc = os.path.join(repo, "server", "grpc", "main.cc")
    with open(main_cc) as f:
        names = set(re.findall(r"ABSL_FLAG\(\s*[\w:<>]+\s*,\s*(\w+)\s*,", f.read()))
    require("listen" in names and "model" in names, f"{main_cc}: found no ABSL_FLAG definitions")
    return names


def health_services(repo):
    """The grpc.health.v1 service names logn_server reports: "" and GrpcServer::kServiceNames."""
    header = os.path.join(repo, "server", "grpc", "grpc_server.h")
    with open(header) as f:
        m = re.search(r"kServiceNames\[\]\s*=\s*\{([^}]*)\}", f.read())
    require(m, f"{header}: no kServiceNames")
    return {""} | set(re.findall(r'"([\w.]+)"', m.group(1)))


def cli_flags(repo):
    source = ""
    for root, _, files in os.walk(os.path.join(repo, "client", "cli")):
        for name in files:
            if name.endswith(".cc") and not name.endswith("_test.cc"):
                with open(os.path.join(root, name)) as f:
                    source += f.read()
    return set(re.findall(r'"(--[\w-]+)"', source))


# ---------------------------------------------------------------------------------------------
# Small helpers


def flag_value(args, name):
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def parse_duration_seconds(text, where):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text or "")
    require(m, f"{where}: cannot parse duration {text!r}")
    return float(m.group(1)) * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m.group(2)]


QUANTITY_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
                   "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}


def quantity(value, where):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([a-zA-Z]*)", str(value))
    require(m and m.group(2) in QUANTITY_SUFFIX, f"{where}: cannot parse quantity {value!r}")
    return float(m.group(1)) * QUANTITY_SUFFIX[m.group(2)]


def name_of(o):
    return f"{o['kind']}/{o['metadata']['name']}"


def strings(value, path=""):
    """Every string in a YAML tree, with its path."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def replicas_of(objects, workload):
    """What a workload runs at least: its HPA's minReplicas when one scales it, else replicas."""
    for hpa in find(objects, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if ref.get("kind") == workload["kind"] and ref.get("name") == workload["metadata"]["name"]:
            return hpa["spec"].get("minReplicas", 1)
    return workload["spec"].get("replicas", 1)


# ---------------------------------------------------------------------------------------------
# Secrets: never in the manifests


def secret_refs(obj):
    """(secret name, key or None for 'every key', where) for each Secret a workload reads."""
    for pod, c in containers_of(obj):
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                yield ref.get("name"), ref.get("key"), f"container {c['name']} env {e['name']}"
        for e in c.get("envFrom", []):
            if "secretRef" in e:
                yield e["secretRef"].get("name"), None, f"container {c['name']} envFrom"
    for pod in pod_specs(obj):
        for v in pod.get("volumes", []):
            if "secret" in v:
                items = v["secret"].get("items")
                for key in [i["key"] for i in items] if items else [None]:
                    yield v["secret"].get("secretName"), key, f"volume {v['name']}"
            for source in (v.get("projected") or {}).get("sources", []):
                if "secret" in source:
                    for i in source["secret"].get("items") or [{"key": None}]:
                        yield source["secret"].get("name"), i["key"], f"volume {v['name']}"


def check_secrets(rendered, repo):
    referenced = {}
    for where, objects in rendered.items():
        for o in objects:
            require(o["kind"] != "Secret",
                    f"{where}: {name_of(o)} is in the manifests: Secrets (the admin token, the "
                    f"PostgreSQL password and the store URL that carries it) are created outside "
                    f"them (docs/deploy.md), never committed")
            for path, value in strings(o):
                require(not URL_WITH_PASSWORD.search(value),
                        f"{where}: {name_of(o)} {path}: a URL with a password in plain text "
                        f"({value!r}); read it from a Secret (secretKeyRef)")
            for _, c in containers_of(o):
                for e in c.get("env", []):
                    require(not (CREDENTIAL_ENV.search(e["name"]) and "value" in e),
                            f"{where}: {name_of(o)} container {c['name']}: env {e['name']} has "
                            f"a literal value; credentials come from a Secret (secretKeyRef)")
                for a in c.get("command", []) + c.get("args", []):
                    require(not CREDENTIAL_ARG.match(a),
                            f"{where}: {name_of(o)} container {c['name']}: argument {a!r} puts a "
                            f"credential on the command line; use an env var or file from a "
                            f"Secret")
            for secret, key, w in secret_refs(o):
                require(key is not None, f"{where}: {name_of(o)} {w}: reads every key of Secret "
                                         f"{secret}; name the keys (secretKeyRef or items)")
                require(secret in EXTERNAL_SECRETS and key in EXTERNAL_SECRETS[secret],
                        f"{where}: {name_of(o)} {w}: Secret {secret} key {key} is not one that "
                        f"docs/deploy.md tells to create ({EXTERNAL_SECRETS})")
                referenced.setdefault(secret, set()).add(key)
    for secret, keys in EXTERNAL_SECRETS.items():
        unused = keys - referenced.get(secret, set())
        require(not unused, f"no manifest reads Secret {secret} key(s) {sorted(unused)}: drop "
                            f"them from EXTERNAL_SECRETS and docs/deploy.md")
    docs_path = os.path.join(repo, "docs", "deploy.md")
    with open(docs_path) as f:
        docs = f.read()
    for secret, keys in EXTERNAL_SECRETS.items():
        require(f"create secret generic {secret}" in docs,
                f"{docs_path}: no `kubectl create secret generic {secret}` for the Secret the "
                f"manifests read")
        for key in keys:
            require(re.search(rf"--from-(literal|file)={re.escape(key)}=", docs),
                    f"{docs_path}: the create command for {secret} does not set key {key}")
    read = "; ".join(f"{s} ({', '.join(sorted(k))})" for s, k in sorted(referenced.items()))
    ok(f"secrets: no Secret object and no plain credential in {len(rendered)} renderings; they "
       f"read only {read}, created as docs/deploy.md says")


# ---------------------------------------------------------------------------------------------
# Every container: resources and securityContext


def check_resources(where, o, c):
    w = f"{where}: {name_of(o)} container {c['name']}"
    res = c.get("resources") or {}
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            require(r in (res.get(part) or {}), f"{w}: resources.{part}.{r} is missing")
    for r in ("cpu", "memory"):
        request = quantity(res["requests"][r], w)
        limit = quantity(res["limits"][r], w)
        require(request <= limit, f"{w}: resources.requests.{r} {res['requests'][r]} exceeds "
                                  f"limits.{r} {res['limits'][r]}")


def check_security(where, o, pod, c):
    w = f"{where}: {name_of(o)} container {c['name']}"
    sc = c.get("securityContext") or {}
    pod_sc = pod.get("securityContext") or {}

    def effective(key):
        return sc.get(key, pod_sc.get(key))

    require(effective("runAsNonRoot") is True, f"{w}: runAsNonRoot must be true (container or pod "
                                               f"securityContext)")
    require(effective("runAsUser") != 0, f"{w}: runAsUser 0 is root")
    require(sc.get("readOnlyRootFilesystem") is True, f"{w}: securityContext."
                                                      f"readOnlyRootFilesystem must be true")
    require(sc.get("allowPrivilegeEscalation") is False,
            f"{w}: securityContext.allowPrivilegeEscalation must be false")
    require(sc.get("privileged") is not True, f"{w}: privileged containers are not allowed")
    caps = sc.get("capabilities") or {}
    require("ALL" in (caps.get("drop") or []), f"{w}: securityContext.capabilities.drop must "
                                               f"include ALL")
    require(not caps.get("add"), f"{w}: adds capabilities {caps.get('add')}")
    seccomp = (effective("seccompProfile") or {}).get("type")
    require(seccomp in ("RuntimeDefault", "Localhost"),
            f"{w}: seccompProfile should be RuntimeDefault, got {seccomp}")
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        require(pod.get(host) is not True, f"{where}: {name_of(o)}: {host} is not allowed")
    require(pod.get("automountServiceAccountToken") is False,
            f"{where}: {name_of(o)}: automountServiceAccountToken should be false (no pod here "
            f"talks to the API server)")
    if o["kind"] in LONG_RUNNING:
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        require("/tmp" in mounts and "emptyDir" in volumes.get(mounts["/tmp"], {}),
                f"{w}: /tmp should be an emptyDir (the root filesystem is read-only)")


def check_containers(rendered):
    count = 0
    for where, objects in rendered.items():
        for o in objects:
            for pod, c in containers_of(o):
                check_resources(where, o, c)
                check_security(where, o, pod, c)
                name, tag, digest = split_image(c.get("image", ""))
                require(digest or (tag and tag != "latest"),
                        f"{where}: {name_of(o)} container {c['name']}: image {c.get('image')!r} "
                        f"is not pinned by a tag (or digest)")
                count += 1
    require(count > 0, "no container in any rendering")
    ok(f"{count} containers in all renderings: requests <= limits for cpu and memory; non-root, "
       f"read-only root filesystem, no privilege escalation, capabilities drop ALL, "
       f"RuntimeDefault seccomp, no service account token; images pinned")


# ---------------------------------------------------------------------------------------------
# The server's Deployment


def check_env_refs(objects, c, w):
    env = {e["name"]: e for e in c.get("env", [])}
    for a in c.get("args", []) + c.get("command", []):
        for var in re.findall(r"\$\((\w+)\)", a):
            require(var in env, f"{w}: {a!r} uses $({var}) but the container defines no env "
                                f"{var} (Kubernetes would pass it literally)")
    for e in env.values():
        ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
        if ref:
            cm = one(objects, "ConfigMap", ref["name"], f"{w}: env {e['name']}")
            require(ref["key"] in cm.get("data", {}), f"{w}: env {e['name']}: ConfigMap "
                                                      f"{ref['name']} has no key {ref['key']}")


def resolve_arg(objects, c, value):
    """A $(VAR) argument resolved through the container's env (literal or ConfigMap key)."""
    m = re.fullmatch(r"\$\((\w+)\)", value or "")
    if not m:
        return value
    e = next((e for e in c.get("env", []) if e["name"] == m.group(1)), None)
    if e is None:
        return None
    if "value" in e:
        return e["value"]
    ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
    if ref:
        return next((cm.get("data", {}).get(ref["key"]) for cm in find(objects, "ConfigMap",
                                                                        ref["name"])), None)
    return None


def check_probes(c, args, health, drain_s, w):
    listen_port = int(flag_value(args, "listen").rsplit(":", 1)[1])
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    require(ports.get("grpc") == listen_port, f"{w}: container port grpc {ports.get('grpc')} is "
                                              f"not the --listen port {listen_port}")
    budgets = {}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = c.get(probe)
        require(p and "grpc" in p, f"{w}: {probe} should be a native gRPC probe (grpc.health.v1 "
                                   f"on the server's port), got {sorted(p or {})}")
        require(p["grpc"].get("port") == listen_port,
                f"{w}: {probe} probes port {p['grpc'].get('port')}, but gRPC listens on "
                f"{listen_port}")
        service = p["grpc"].get("service", "")
        require(service in health,
                f"{w}: {probe} asks the health service for {service!r}, which logn_server does "
                f"not report (it reports {sorted(health)}; server/grpc/grpc_server.h)")
        budgets[probe] = p.get("failureThreshold", 3) * p.get("periodSeconds", 10)
    require(budgets["startupProbe"] >= MIN_STARTUP_SECONDS,
            f"{w}: startupProbe allows only {budgets['startupProbe']}s for the model load "
            f"(< {MIN_STARTUP_SECONDS}s)")
    require(budgets["livenessProbe"] > drain_s,
            f"{w}: livenessProbe gives up after {budgets['livenessProbe']}s of NOT_SERVING, "
            f"within the {drain_s:g}s drain: the kubelet would kill a draining server")
    return budgets


def check_server_deployment(objects, ctx, where):
    d = one(objects, "Deployment", SERVER, where)
    pod = d["spec"]["template"]["spec"]
    require(len(pod["containers"]) == 1, f"{where}: Deployment {SERVER} should have one "
                                         f"container")
    c = pod["containers"][0]
    w = f"{where}: Deployment {SERVER} container {c['name']}"
    args = c.get("args", [])
    for a in args:
        m = re.match(r"--([\w-]+)(=|$)", a)
        require(m and m.group(1) in ctx["flags"],
                f"{w}: {a!r}: logn_server has no flag --{m.group(1) if m else a} "
                f"(server/grpc/main.cc)")
    check_env_refs(objects, c, w)
    for flag in ("listen", "metrics_listen", "store", "admin_token_file", "drain_timeout"):
        require(flag_value(args, flag) is not None, f"{w}: missing --{flag}=")
    require((flag_value(args, "model") is None) != (flag_value(args, "model_repository") is None),
            f"{w}: exactly one of --model= and --model_repository= expected")
    require(flag_value(args, "listen").endswith(":8500"), f"{w}: --listen should use port 8500")
    require(flag_value(args, "metrics_listen").endswith(":8501"),
            f"{w}: --metrics_listen should use port 8501")
    require(flag_value(args, "store") == "$(LOGN_STORE_URL)",
            f"{w}: --store should be $(LOGN_STORE_URL)")

    drain_s = parse_duration_seconds(flag_value(args, "drain_timeout"), w)
    budgets = check_probes(c, args, ctx["health"], drain_s, w)
    pre_stop = (c.get("lifecycle") or {}).get("preStop")
    require(pre_stop, f"{w}: lifecycle.preStop is missing")
    if "sleep" in pre_stop:
        pre_stop_s = float(pre_stop["sleep"]["seconds"])
    else:
        cmd = (pre_stop.get("exec") or {}).get("command", [])
        require(len(cmd) == 2 and cmd[0].endswith("sleep"), f"{w}: preStop should sleep")
        pre_stop_s = float(cmd[1])
    grace = pod.get("terminationGracePeriodSeconds", 30)
    require(grace >= drain_s + pre_stop_s, f"{where}: terminationGracePeriodSeconds {grace} < "
                                           f"drain {drain_s:g}s + preStop {pre_stop_s:g}s")

    uid = (c.get("securityContext") or {}).get("runAsUser",
                                               (pod.get("securityContext") or {}).get("runAsUser"))
    require(uid == SERVER_UID, f"{w}: runAsUser should be {SERVER_UID} (the image's USER), "
                               f"got {uid}")

    # Threads: intra_op_threads x executor_threads within the CPU limit.
    threads = 1
    for flag in ("intra_op_threads", "executor_threads"):
        value = resolve_arg(objects, c, flag_value(args, flag))
        require(value is not None and str(value).isdigit() and int(value) > 0,
                f"{w}: --{flag} should be a positive number (got {value!r})")
        threads *= int(value)
    cpu_limit = quantity(c["resources"]["limits"]["cpu"], w)
    require(threads <= cpu_limit, f"{w}: intra_op_threads x executor_threads = {threads} "
                                  f"exceeds the CPU limit {cpu_limit:g}")

    # The admin token: a file on a Secret volume, key admin-token.
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        require(m["name"] in volumes, f"{w}: volumeMount {m['name']} has no volume")
    token = flag_value(args, "admin_token_file")
    token_dir, token_file = os.path.split(token)
    require(token_dir in mounts, f"{w}: --admin_token_file={token} is not on a mounted volume")
    secret_vol = volumes[mounts[token_dir]].get("secret") or {}
    items = {i["path"]: i["key"] for i in secret_vol.get("items", [])}
    require(secret_vol.get("secretName") == "logn-serve-secrets" and
            items.get(token_file) == "admin-token",
            f"{w}: {token} should be the key admin-token of the Secret logn-serve-secrets")

    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    require(ports.get("metrics") == 8501, f"{w}: container port metrics 8501 expected, got "
                                          f"{ports}")
    meta = d["spec"]["template"]["metadata"]
    labels, annotations = meta.get("labels", {}), meta.get("annotations", {})
    require(labels.get("app.kubernetes.io/name") == SERVER,
            f"{where}: pod template needs label app.kubernetes.io/name={SERVER}")
    require(annotations.get("prometheus.io/scrape") == "true" and
            annotations.get("prometheus.io/port") == "8501",
            f"{where}: pod template needs prometheus.io/scrape and prometheus.io/port=8501")
    require(selects(d["spec"]["selector"], labels),
            f"{where}: Deployment selector {d['spec']['selector']} does not match its pod labels")
    repository = flag_value(args, "model_repository")
    if repository is not None:
        check_model_repository_volume(repository, c, volumes, w)
    else:
        model = resolve_arg(objects, c, flag_value(args, "model"))
        check_image_model_path(model or "", ctx["repo"], w)
    ok(f"{where}: Deployment {SERVER}: gRPC startup/readiness/liveness probes on :8500 (health "
       f"service '', budgets {budgets['startupProbe']}/{budgets['readinessProbe']}/"
       f"{budgets['livenessProbe']}s), preStop {pre_stop_s:g}s + drain {drain_s:g}s <= grace "
       f"{grace}s, uid {uid}, {threads} threads <= {cpu_limit:g} CPUs, token from the Secret, "
       f"flags known")
    return d, c


def check_model_repository_volume(repository, container, volumes, where):
    """--model_repository must be a read-only mount of a PersistentVolumeClaim (shared by the
    replicas, written by whoever rolls out model versions)."""
    mount = next((m for m in container.get("volumeMounts", []) if m["mountPath"] == repository),
                 None)
    require(mount is not None, f"{where}: --model_repository={repository} is not a volume mount")
    require(mount.get("readOnly") is True,
            f"{where}: the model repository mount {repository} should be readOnly")
    claim = (volumes.get(mount["name"]) or {}).get("persistentVolumeClaim")
    require(claim and claim.get("claimName"),
            f"{where}: the model repository volume {mount['name']} should be a PersistentVolumeClaim")


def check_image_model_path(model, repo, where):
    m = re.fullmatch(r"/opt/logn/models/([\w.-]+)/([\w.-]+\.pt)", model)
    require(m, f"{where}: model {model!r} is not one of the image's /opt/logn/models/*/*.pt")
    require(os.path.isfile(os.path.join(repo, "models", m.group(1), m.group(2))),
            f"{where}: model {model}: models/{m.group(1)}/{m.group(2)} does not exist")


# ---------------------------------------------------------------------------------------------
# Services, HPA, PDB


def check_services(objects, where):
    d = one(objects, "Deployment", SERVER, where)
    labels = pod_labels(d)
    c = d["spec"]["template"]["spec"]["containers"][0]
    port_names = {p["name"] for p in c["ports"]} | {p["containerPort"] for p in c["ports"]}
    svc = one(objects, "Service", SERVER, where)
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    require(ports.get("grpc", {}).get("port") == 8500 and
            ports["grpc"].get("appProtocol") == "grpc",
            f"{where}: Service {SERVER} needs port grpc 8500 with appProtocol grpc")
    require(ports.get("metrics", {}).get("port") == 8501, f"{where}: Service metrics port 8501")
    headless = one(objects, "Service", f"{SERVER}-replicas", where)
    require(headless["spec"].get("clusterIP") == "None",
            f"{where}: {SERVER}-replicas must be headless (clusterIP: None)")
    require(headless["spec"].get("publishNotReadyAddresses", False) is False,
            f"{where}: {SERVER}-replicas must not publish not-ready addresses")
    require(d["spec"]["template"]["spec"].get("subdomain") == f"{SERVER}-replicas",
            f"{where}: the pods' subdomain should be {SERVER}-replicas (per-replica DNS)")
    for s in (svc, headless):
        require(selects(s["spec"]["selector"], labels),
                f"{where}: Service {s['metadata']['name']} selector {s['spec']['selector']} "
                f"selects no {SERVER} pod")
        for p in s["spec"]["ports"]:
            require(p.get("targetPort", p["port"]) in port_names,
                    f"{where}: Service {s['metadata']['name']} targetPort {p.get('targetPort')} "
                    f"is not a container port")


def allowed_disruptions(pdb, replicas, where):
    spec = pdb["spec"]

    def count(value):
        if isinstance(value, str) and value.endswith("%"):
            return math.ceil(replicas * int(value[:-1]) / 100)
        return int(value)

    require(("minAvailable" in spec) != ("maxUnavailable" in spec),
            f"{where}: PodDisruptionBudget {pdb['metadata']['name']} needs exactly one of "
            f"minAvailable and maxUnavailable")
    if "maxUnavailable" in spec:
        return min(count(spec["maxUnavailable"]), replicas)
    return max(replicas - count(spec["minAvailable"]), 0)


def check_scaling(objects, where):
    """HPA and PDB consistent with the replicas; returns the server's HPA."""
    workloads = [o for o in objects if o["kind"] in LONG_RUNNING]
    hpas = find(objects, "HorizontalPodAutoscaler")
    for hpa in hpas:
        w = f"{where}: HorizontalPodAutoscaler {hpa['metadata']['name']}"
        require(hpa["apiVersion"] == "autoscaling/v2", f"{w}: should be autoscaling/v2")
        ref = hpa["spec"]["scaleTargetRef"]
        targets = [o for o in workloads if o["kind"] == ref.get("kind") and
                   o["metadata"]["name"] == ref.get("name") and o["apiVersion"] ==
                   ref.get("apiVersion")]
        require(targets, f"{w}: scaleTargetRef {ref} names no workload of this rendering")
        target = targets[0]
        low, high = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
        require(1 <= low <= high, f"{w}: minReplicas {low} > maxReplicas {high}")
        replicas = target["spec"].get("replicas", 1)
        require(replicas == low, f"{w}: {name_of(target)} starts with replicas {replicas} but the "
                                 f"HPA's minReplicas is {low}: set them equal (the overlay's "
                                 f"replicas and its HPA patch)")
        for m in hpa["spec"].get("metrics", []):
            if m.get("type") == "Resource" and m["resource"]["target"].get("type") == "Utilization":
                r = m["resource"]["name"]
                for _, c in containers_of(target):
                    require(r in ((c.get("resources") or {}).get("requests") or {}),
                            f"{w}: a {r} utilization target needs requests.{r} on container "
                            f"{c['name']}")
    pdbs = find(objects, "PodDisruptionBudget")
    for workload in workloads:
        replicas = replicas_of(objects, workload)
        covering = [p for p in pdbs if selects(p["spec"].get("selector"), pod_labels(workload))]
        require(len(covering) <= 1, f"{where}: {name_of(workload)} is selected by several PDBs")
        if not covering:
            require(replicas < 2, f"{where}: {name_of(workload)} runs {replicas} replicas "
                                  f"without a PodDisruptionBudget")
            continue
        pdb = covering[0]
        w = f"{where}: PodDisruptionBudget {pdb['metadata']['name']}"
        allowed = allowed_disruptions(pdb, replicas, w)
        require(allowed >= 1, f"{w} allows no voluntary eviction of {name_of(workload)} at "
                              f"{replicas} replica(s): node drains would hang")
        require(replicas < 2 or allowed <= replicas - 1,
                f"{w} lets all {replicas} replicas of {name_of(workload)} be evicted at once")
    for pdb in pdbs:
        selected = [o for o in workloads if selects(pdb["spec"].get("selector"), pod_labels(o))]
        require(selected, f"{where}: PodDisruptionBudget {pdb['metadata']['name']} selector "
                          f"{pdb['spec'].get('selector')} selects no pod of this rendering")
    server_hpa = [h for h in hpas if h["spec"]["scaleTargetRef"].get("name") == SERVER]
    return server_hpa[0] if server_hpa else None


def check_k8s_prometheus(objects, where):
    prom = [o for o in find(objects, "ConfigMap") if "prometheus.yml" in o.get("data", {})]
    require(prom, f"{where}: no ConfigMap with a prometheus.yml")
    config = yaml.safe_load(prom[0]["data"]["prometheus.yml"])
    for job in config.get("scrape_configs", []):
        if not any(sd.get("role") == "pod" for sd in job.get("kubernetes_sd_configs") or []):
            continue
        keeps = {(tuple(r.get("source_labels", [])), str(r.get("regex")))
                 for r in job.get("relabel_configs", []) if r.get("action") == "keep"}
        if ((("__meta_kubernetes_pod_label_app_kubernetes_io_name",), SERVER) in keeps and
                (("__meta_kubernetes_pod_container_port_number",), "8501") in keeps):
            return
    fail(f"{where}: the Prometheus ConfigMap needs a kubernetes_sd_configs pod job keeping "
         f"app.kubernetes.io/name={SERVER} and container port 8501")


# ---------------------------------------------------------------------------------------------
# The overlays


def store_env(c):
    return next((e for e in c.get("env", []) if e["name"] == "LOGN_STORE_URL"), None)


def check_dev(objects, d, c, hpa, where):
    require(d["spec"].get("replicas") == 1, f"{where}: dev should run 1 replica")
    require(hpa and hpa["spec"]["maxReplicas"] == 1, f"{where}: dev HPA maxReplicas should be 1 "
                                                     f"(SQLite has one writer)")
    env = store_env(c) or {}
    url = env.get("value", "")
    require(url.startswith("sqlite:///var/lib/logn/"),
            f"{where}: dev's LOGN_STORE_URL should be SQLite under /var/lib/logn, got {env}")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
    claim = volumes.get(mounts.get("/var/lib/logn"), {}).get("persistentVolumeClaim", {})
    require(claim, f"{where}: /var/lib/logn should be a PVC")
    one(objects, "PersistentVolumeClaim", claim["claimName"], where)
    require(not find(objects, "StatefulSet"), f"{where}: dev should have no PostgreSQL")
    require(d["spec"].get("strategy", {}).get("type") == "Recreate",
            f"{where}: SQLite on a ReadWriteOnce PVC needs strategy Recreate")
    ok(f"{where}: 1 replica, HPA max 1, store {url} on PVC {claim['claimName']}, Recreate")


def check_prod(objects, d, c, hpa, where):
    require(d["spec"].get("replicas") == 3, f"{where}: prod should run 3 replicas")
    require(hpa and hpa["spec"]["minReplicas"] == 3, f"{where}: prod HPA minReplicas should be 3")
    ref = ((store_env(c) or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
    require((ref.get("name"), ref.get("key")) == ("logn-serve-secrets", "store-url"),
            f"{where}: prod's LOGN_STORE_URL (a postgres:// URL with its password) should come "
            f"from the Secret logn-serve-secrets key store-url, got {store_env(c)}")
    require(d["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable") == 0,
            f"{where}: prod rollouts should keep capacity (maxUnavailable: 0)")
    sts = find(objects, "StatefulSet")
    require(len(sts) == 1 and sts[0]["spec"].get("volumeClaimTemplates"),
            f"{where}: prod needs the PostgreSQL StatefulSet with volumeClaimTemplates")
    pg = sts[0]
    pg_containers = [c for _, c in containers_of(pg)]
    require(any(c["image"].startswith("postgres:15") for c in pg_containers),
            f"{where}: PostgreSQL should be postgres:15")
    svc = one(objects, "Service", pg["spec"].get("serviceName"), f"{where}: StatefulSet "
                                                                 f"{pg['metadata']['name']} "
                                                                 f"serviceName")
    require(svc["spec"].get("clusterIP") == "None", f"{where}: Service "
                                                    f"{svc['metadata']['name']} governs a "
                                                    f"StatefulSet: it must be headless")
    require(selects(svc["spec"]["selector"], pod_labels(pg)),
            f"{where}: Service {svc['metadata']['name']} does not select the PostgreSQL pods")
    require(any(p["port"] == 5432 for p in svc["spec"]["ports"]),
            f"{where}: Service {svc['metadata']['name']} has no port 5432")
    password = next((e for c in pg_containers for e in c.get("env", [])
                     if e["name"] == "POSTGRES_PASSWORD"), {})
    require(((password.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") ==
            "logn-postgres", f"{where}: POSTGRES_PASSWORD should come from the Secret "
                             f"logn-postgres")
    ok(f"{where}: 3 replicas, HPA min 3, store URL from the Secret, PostgreSQL StatefulSet "
       f"{pg['metadata']['name']} (headless Service {svc['metadata']['name']}:5432, "
       f"volumeClaimTemplates, password from the Secret)")


def check_server_roots(rendered, ctx):
    roots = [r for r in rendered if find(rendered[r], "Deployment", SERVER)]
    require({"base", "overlays/dev", "overlays/prod"} <= set(roots),
            f"the Deployment {SERVER} should render in base and both overlays (found in {roots})")
    for where in roots:
        objects = rendered[where]
        d, c = check_server_deployment(objects, ctx, where)
        check_services(objects, where)
        hpa = check_scaling(objects, where)
        require(hpa and hpa["spec"]["metrics"] and any(
            m.get("type") == "Resource" and m["resource"]["name"] == "cpu" and
            m["resource"]["target"].get("averageUtilization") == 70
            for m in hpa["spec"]["metrics"]), f"{where}: the server's HPA needs a CPU target "
                                              f"of 70 %")
        one(objects, "ConfigMap", "logn-serve-config", where)
        check_k8s_prometheus(objects, where)
        replicas = replicas_of(objects, d)
        pdb = [p for p in find(objects, "PodDisruptionBudget")
               if selects(p["spec"].get("selector"), pod_labels(d))]
        evictions = (f"PDB allows {allowed_disruptions(pdb[0], replicas, where)} of {replicas} "
                     f"evicted at once" if pdb else "no PDB (1 replica)")
        ok(f"{where}: Services; HPA {hpa['spec'].get('minReplicas', 1)}.."
           f"{hpa['spec']['maxReplicas']} from replicas {d['spec'].get('replicas', 1)}; "
           f"{evictions}")
        if where.startswith("overlays/"):
            namespace = d["metadata"].get("namespace")
            require(namespace and find(objects, "Namespace", namespace),
                    f"{where}: objects should be in a namespace the overlay creates")
            for o in objects:
                if o["kind"] != "Namespace":
                    require(o["metadata"].get("namespace") == namespace,
                            f"{where}: {name_of(o)} is not in namespace {namespace}")
        if where == "overlays/dev":
            check_dev(objects, d, c, hpa, where)
        elif where == "overlays/prod":
            check_prod(objects, d, c, hpa, where)
    for where, objects in rendered.items():
        if where not in roots:
            check_scaling(objects, where)


# ---------------------------------------------------------------------------------------------
# The sharded calibration Job


JOB_INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def check_job(rendered, ctx):
    jobs = [(where, o) for where, objects in rendered.items() for o in objects
            if o["kind"] == "Job"]
    require(len(jobs) == 1, f"expected one Job (jobs/calibrate-sharded.yaml), found "
                            f"{[(w, name_of(o)) for w, o in jobs]}")
    where, job = jobs[0]
    w = f"{where}: {name_of(job)}"
    spec = job["spec"]
    require(spec.get("completionMode") == "Indexed", f"{w}: completionMode must be Indexed (each "
                                                     f"pod gets its shard index)")
    n = spec.get("completions")
    require(isinstance(n, int) and n >= 2, f"{w}: completions should be the shard count (>= 2), "
                                           f"got {n}")
    require(spec.get("parallelism") == n, f"{w}: parallelism {spec.get('parallelism')} != "
                                          f"completions {n}: the shards should run at once")
    pod = spec["template"]["spec"]
    require(pod.get("restartPolicy") in ("OnFailure", "Never"),
            f"{w}: restartPolicy must be OnFailure or Never")
    require(len(pod["containers"]) == 1, f"{w}: one container expected")
    c = pod["containers"][0]
    cmd = c.get("command", []) + c.get("args", [])
    require(cmd[:2] == ["/opt/logn/bin/logn", "calibrate"], f"{w}: should run logn calibrate")

    def arg(name):
        require(name in cmd, f"{w}: logn calibrate needs {name}")
        i = cmd.index(name)
        return cmd[i + 1] if i + 1 < len(cmd) else ""

    env = {e["name"]: e for e in c.get("env", [])}
    index = env.get("JOB_COMPLETION_INDEX", {})
    field = ((index.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
    require(field == JOB_INDEX_FIELD, f"{w}: env JOB_COMPLETION_INDEX should be the fieldRef "
                                      f"{JOB_INDEX_FIELD}, got {index}")
    require(arg("--shard") == f"$(JOB_COMPLETION_INDEX)/{n}",
            f"{w}: --shard is {arg('--shard')!r}, should be $(JOB_COMPLETION_INDEX)/{n} (the "
            f"completions)")
    require("--partial" in cmd, f"{w}: needs --partial (shards are merged afterwards)")
    require("--resume" in cmd, f"{w}: needs --resume (a restarted pod continues its shard)")
    require("$(JOB_COMPLETION_INDEX)" in arg("--job-id"),
            f"{w}: --job-id {arg('--job-id')!r} should contain $(JOB_COMPLETION_INDEX): one "
            f"checkpoint per shard")
    require(arg("--checkpoint-every").isdigit(), f"{w}: --checkpoint-every N")
    server = arg("--server")
    host, _, port = server.rpartition(":")
    require(port == "8500", f"{w}: --server should be a :8500 target")
    for overlay in ("overlays/dev", "overlays/prod"):
        svc = find(rendered.get(overlay, []), "Service", host.split(".")[0])
        require(svc and any(p["port"] == 8500 for p in svc[0]["spec"]["ports"]),
                f"{w}: --server {server}: {overlay} has no Service {host} with port 8500")
    arg("--dataset")
    arg("--images")
    for a in cmd:
        if a.startswith("--"):
            require(a in ctx["cli_flags"], f"{w}: the logn CLI has no flag {a}")
        for var in re.findall(r"\$\((\w+)\)", a):
            require(var in env, f"{w}: {a!r} uses $({var}) without an env {var}")
    token = ((env.get("LOGN_TOKEN", {}).get("valueFrom") or {}).get("secretKeyRef") or {})
    require((token.get("name"), token.get("key")) == ("logn-serve-secrets", "admin-token"),
            f"{w}: LOGN_TOKEN should come from the Secret logn-serve-secrets key admin-token")
    ok(f"{where}: Indexed Job, completions = parallelism = {n}, --shard "
       f"$(JOB_COMPLETION_INDEX)/{n} from the job-completion-index annotation, per-shard "
       f"--job-id, --partial --resume, {server} exists in both overlays")


# ---------------------------------------------------------------------------------------------


def check_k8s(deploy_dir, repo, kubectl):
    k8s_dir = os.path.join(deploy_dir, "k8s")
    roots = kustomization_roots(k8s_dir)
    for needed in ("base", "postgres", "overlays/dev", "overlays/prod"):
        require(needed in roots, f"{k8s_dir}/{needed}: no kustomization.yaml")
    texts = render_all(kubectl, k8s_dir)
    rendered = {where: parse_rendered(text, where) for where, text in texts.items()}
    ok(f"kubectl kustomize: {', '.join(f'{w} ({len(o)} objects)' for w, o in rendered.items())}")
    ctx = {"repo": repo, "flags": server_flags(repo), "health": health_services(repo),
           "cli_flags": cli_flags(repo)}
    check_secrets(rendered, repo)
    check_containers(rendered)
    check_server_roots(rendered, ctx)
    check_job(rendered, ctx)
    return rendered
