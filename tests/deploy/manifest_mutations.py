"""Every check of check_manifests.py can fail: each mutation below breaks a copy of deploy/ in a
temp dir in one way a reviewer would object to, and the checks must reject that copy with the
expected message. The real files are never touched. First the unbroken copy must pass.

    run(deploy_dir, repo, kubectl, check) -> number of mutations the checks missed
"""
import concurrent.futures
import json
import os
import shutil
import tempfile
import traceback

import deploy_common
from deploy_common import CheckError, copy_deploy, edit_yaml

DEPLOYMENT = "k8s/base/deployment.yaml"
STATEFULSET = "k8s/postgres/statefulset.yaml"
JOB = "k8s/jobs/calibrate-sharded.yaml"
SERVER_C = "spec.template.spec.containers.0"
PG_C = "spec.template.spec.containers.0"
JOB_C = "spec.template.spec.containers.0"


def parse_path(path):
    if isinstance(path, list):
        return path
    return [int(p) if p.isdigit() else p for p in path.split(".")]


def walk(obj, path, create=False):
    *parents, last = parse_path(path)
    for p in parents:
        if create and isinstance(p, str) and p not in obj:
            obj[p] = {}
        obj = obj[p]
    return obj, last


def set_(kind, path, value, name=None):
    def edit(docs):
        obj, last = walk(target(docs, kind, name), path, create=True)
        obj[last] = value
    return edit


def del_(kind, path, name=None):
    def edit(docs):
        obj, last = walk(target(docs, kind, name), path)
        del obj[last]
    return edit


def call(kind, path, fn, name=None):
    """fn(value) changes the value at path in place."""
    def edit(docs):
        obj, last = walk(target(docs, kind, name), path)
        fn(obj[last])
    return edit


def target(docs, kind, name=None):
    found = [d for d in docs if d.get("kind") == kind and
             (name is None or d.get("metadata", {}).get("name") == name)]
    assert len(found) == 1, f"mutation: expected one {kind}/{name}, found {len(found)}"
    return found[0]


def replace_arg(old, new):
    def fn(args):
        args[args.index(old)] = new
    return fn


def add_resource(name, text):
    """A new file in k8s/base, listed in its kustomization."""
    def edit(deploy):
        with open(os.path.join(deploy, "k8s", "base", name), "w") as f:
            f.write(text)
        edit_yaml(os.path.join(deploy, "k8s", "base", "kustomization.yaml"),
                  lambda docs: docs[0]["resources"].append(name))
    return edit


def kustomization(path, fn):
    def edit(deploy):
        edit_yaml(os.path.join(deploy, path), lambda docs: fn(docs[0]))
    return edit


PLAIN_SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: logn-serve-secrets
stringData:
  admin-token: REPLACE-ME
"""

# (id, file under deploy/ (None: edit() takes the deploy dir), edit, expected message part)
MUTATIONS = [
    # kubectl kustomize itself
    ("render: a resource that does not exist", None,
     kustomization("k8s/base/kustomization.yaml", lambda k: k["resources"].append("gone.yaml")),
     "kubectl kustomize"),
    ("render: a patch whose target does not exist", "k8s/overlays/prod/hpa-patch.yaml",
     set_("HorizontalPodAutoscaler", "metadata.name", "logn-serve-typo"), "kubectl kustomize"),
    # Secrets never in the manifests
    ("secrets: a Secret object with the admin token", None,
     add_resource("secret.yaml", PLAIN_SECRET), "is in the manifests"),
    ("secrets: a postgres:// URL with its password as a literal env value",
     "k8s/overlays/dev/deployment-patch.yaml",
     set_("Deployment", "spec.template.spec.containers.0.env.0.value",
          "postgres://logn:hunter2@logn-postgres:5432/logn"), "a URL with a password"),
    ("secrets: POSTGRES_PASSWORD as a literal", STATEFULSET,
     set_("StatefulSet", PG_C + ".env.2", {"name": "POSTGRES_PASSWORD", "value": "hunter2"}),
     "env POSTGRES_PASSWORD has a literal value"),
    ("secrets: a token on the command line", JOB,
     call("Job", JOB_C + ".args", lambda a: a.append("--token=abc")), "credential on the command"),
    ("secrets: envFrom a whole Secret", STATEFULSET,
     set_("StatefulSet", PG_C + ".envFrom", [{"secretRef": {"name": "logn-postgres"}}]),
     "reads every key of Secret logn-postgres"),
    ("secrets: a key docs/deploy.md does not create", DEPLOYMENT,
     set_("Deployment", "spec.template.spec.volumes.1.secret.items.0.key", "admin-token-v2"),
     "is not one that docs/deploy.md tells to create"),
    # gRPC probes on the health service
    ("probes: readiness over HTTP", DEPLOYMENT,
     set_("Deployment", SERVER_C + ".readinessProbe",
          {"httpGet": {"path": "/metrics", "port": 8501}, "periodSeconds": 5}),
     "readinessProbe should be a native gRPC probe"),
    ("probes: liveness on the metrics port", DEPLOYMENT,
     set_("Deployment", SERVER_C + ".livenessProbe.grpc.port", 8501),
     "livenessProbe probes port 8501"),
    ("probes: a health service the server does not report", DEPLOYMENT,
     set_("Deployment", SERVER_C + ".startupProbe.grpc.service", "logn.v1.Nope"),
     "which logn_server does not report"),
    ("probes: no livenessProbe", DEPLOYMENT, del_("Deployment", SERVER_C + ".livenessProbe"),
     "livenessProbe should be a native gRPC probe"),
    ("probes: startup budget too short for a model load", DEPLOYMENT,
     set_("Deployment", SERVER_C + ".startupProbe.failureThreshold", 6), "allows only 30s"),
    ("probes: liveness kills the draining server", DEPLOYMENT,
     set_("Deployment", SERVER_C + ".livenessProbe.failureThreshold", 2),
     "within the 30s drain"),
    ("probes: container port grpc differs from --listen", DEPLOYMENT,
     set_("Deployment", SERVER_C + ".ports.0.containerPort", 9500),
     "is not the --listen port 8500"),
    # resources
    ("resources: PostgreSQL without limits", STATEFULSET,
     del_("StatefulSet", PG_C + ".resources.limits"), "resources.limits.cpu is missing"),
    ("resources: the Job without requests", JOB, del_("Job", JOB_C + ".resources.requests"),
     "resources.requests.cpu is missing"),
    ("resources: a memory request above the limit", DEPLOYMENT,
     set_("Deployment", SERVER_C + ".resources.requests.memory", "8Gi"),
     "requests.memory 8Gi exceeds limits.memory 4Gi"),
    ("resources: threads above the CPU limit", "k8s/base/configmap.yaml",
     set_("ConfigMap", "data.executor-threads", "4"), "exceeds the CPU limit"),
    # securityContext
    ("security: writable root filesystem (PostgreSQL)", STATEFULSET,
     set_("StatefulSet", PG_C + ".securityContext.readOnlyRootFilesystem", False),
     "readOnlyRootFilesystem must be true"),
    ("security: privilege escalation allowed (Job)", JOB,
     del_("Job", JOB_C + ".securityContext.allowPrivilegeEscalation"),
     "allowPrivilegeEscalation must be false"),
    ("security: capabilities not dropped", DEPLOYMENT,
     set_("Deployment", SERVER_C + ".securityContext.capabilities.drop", []),
     "capabilities.drop must include ALL"),
    ("security: a capability added", DEPLOYMENT,
     set_("Deployment", SERVER_C + ".securityContext.capabilities.add", ["NET_ADMIN"]),
     "adds capabilities"),
    ("security: the Job may run as root", JOB,
     set_("Job", "spec.template.spec.securityContext.runAsNonRoot", False),
     "runAsNonRoot must be true"),
    ("security: uid 0", STATEFULSET,
     set_("StatefulSet", "spec.template.spec.securityContext.runAsUser", 0),
     "runAsUser 0 is root"),
    ("security: privileged", DEPLOYMENT,
     set_("Deployment", SERVER_C + ".securityContext.privileged", True),
     "privileged containers are not allowed"),
    ("security: no seccomp profile", DEPLOYMENT,
     del_("Deployment", "spec.template.spec.securityContext.seccompProfile"),
     "seccompProfile should be RuntimeDefault"),
    ("security: a service account token mounted", STATEFULSET,
     set_("StatefulSet", "spec.template.spec.automountServiceAccountToken", True),
     "automountServiceAccountToken should be false"),
    ("security: no writable /tmp on a read-only root", DEPLOYMENT,
     call("Deployment", SERVER_C + ".volumeMounts", lambda m: m.pop(0)),
     "/tmp should be an emptyDir"),
    ("security: the server not as the image's uid", DEPLOYMENT,
     set_("Deployment", SERVER_C + ".securityContext.runAsUser", 10002),
     "runAsUser should be 10001"),
    # HPA and PDB against the replicas
    ("scaling: HPA minReplicas below the overlay's replicas", "k8s/overlays/prod/hpa-patch.yaml",
     set_("HorizontalPodAutoscaler", "spec.minReplicas", 2),
     "starts with replicas 3 but the HPA's minReplicas is 2"),
    ("scaling: HPA minReplicas above maxReplicas", "k8s/overlays/prod/hpa-patch.yaml",
     set_("HorizontalPodAutoscaler", "spec.maxReplicas", 2), "minReplicas 3 > maxReplicas 2"),
    ("scaling: HPA scales a Deployment that does not exist", "k8s/base/hpa.yaml",
     set_("HorizontalPodAutoscaler", "spec.scaleTargetRef.name", "logn-serv"),
     "names no workload"),
    ("scaling: dev HPA above 1 replica on SQLite", "k8s/overlays/dev/hpa-patch.yaml",
     set_("HorizontalPodAutoscaler", "spec.maxReplicas", 3), "dev HPA maxReplicas should be 1"),
    ("scaling: a PDB that blocks every drain at 1 replica", "k8s/base/pdb.yaml",
     lambda docs: docs[0]["spec"].update({"minAvailable": 1}) or
     docs[0]["spec"].pop("maxUnavailable"), "allows no voluntary eviction"),
    ("scaling: a PDB that lets every replica go", "k8s/base/pdb.yaml",
     set_("PodDisruptionBudget", "spec.maxUnavailable", "100%"), "lets all 3 replicas"),
    ("scaling: a PDB selecting no pod", "k8s/base/pdb.yaml",
     set_("PodDisruptionBudget", ["spec", "selector", "matchLabels", "app.kubernetes.io/name"],
          "logn-serv"), "selects no pod"),
    ("scaling: prod's 3 replicas without a PDB", None,
     kustomization("k8s/base/kustomization.yaml", lambda k: k["resources"].remove("pdb.yaml")),
     "runs 3 replicas without a PodDisruptionBudget"),
    # the sharded Job's index wiring
    ("job: not Indexed", JOB, set_("Job", "spec.completionMode", "NonIndexed"),
     "completionMode must be Indexed"),
    ("job: completions differ from the shard count", JOB,
     lambda docs: docs[0]["spec"].update({"completions": 4, "parallelism": 4}),
     "should be $(JOB_COMPLETION_INDEX)/4"),
    ("job: parallelism below completions", JOB, set_("Job", "spec.parallelism", 1),
     "parallelism 1 != completions 3"),
    ("job: the index from the wrong field", JOB,
     set_("Job", JOB_C + ".env.0.valueFrom.fieldRef.fieldPath", "metadata.name"),
     "env JOB_COMPLETION_INDEX should be the fieldRef"),
    ("job: one --job-id for all shards", JOB,
     call("Job", JOB_C + ".args", replace_arg("big-job-$(JOB_COMPLETION_INDEX)", "big-job")),
     "should contain $(JOB_COMPLETION_INDEX)"),
    ("job: no --resume", JOB, call("Job", JOB_C + ".args", lambda a: a.remove("--resume")),
     "needs --resume"),
    ("job: --server names no Service", JOB,
     call("Job", JOB_C + ".args", replace_arg("logn-serve:8500", "logn-server:8500")),
     "has no Service logn-server"),
    ("job: the token from the wrong key", JOB,
     set_("Job", JOB_C + ".env.1.valueFrom.secretKeyRef.key", "store-url"),
     "LOGN_TOKEN should come from the Secret logn-serve-secrets key admin-token"),
    ("job: a flag the CLI does not have", JOB,
     call("Job", JOB_C + ".args", lambda a: a.extend(["--shards", "3"])),
     "the logn CLI has no flag --shards"),
    # the server's Deployment, Services, overlays
    ("server: a flag logn_server does not have", DEPLOYMENT,
     call("Deployment", SERVER_C + ".args", lambda a: a.append("--no_such_flag=1")),
     "logn_server has no flag --no_such_flag"),
    ("server: grace period shorter than preStop + drain", DEPLOYMENT,
     set_("Deployment", "spec.template.spec.terminationGracePeriodSeconds", 30),
     "terminationGracePeriodSeconds 30 < drain 30s + preStop 5s"),
    ("server: $(VAR) with no env", DEPLOYMENT,
     call("Deployment", SERVER_C + ".args", lambda a: a.append("--max_batch=$(LOGN_MAX_BATCH)")),
     "uses $(LOGN_MAX_BATCH) but the container defines no env"),
    ("server: an image without a tag", STATEFULSET,
     set_("StatefulSet", PG_C + ".image", "postgres"), "is not pinned"),
    ("services: a selector that selects no server pod", "k8s/base/service.yaml",
     set_("Service", ["spec", "selector", "app.kubernetes.io/name"], "other"),
     "selects no logn-serve pod"),
    ("services: the replicas Service not headless", "k8s/base/service-replicas.yaml",
     del_("Service", "spec.clusterIP"), "must be headless"),
    ("overlays: dev's store from the Secret instead of SQLite",
     "k8s/overlays/dev/deployment-patch.yaml",
     call("Deployment", "spec.template.spec.containers.0", lambda c: c.pop("env")),
     "dev's LOGN_STORE_URL should be SQLite"),
    ("overlays: prod's store as a literal", "k8s/overlays/prod/deployment-patch.yaml",
     set_("Deployment", "spec.template.spec.containers",
          [{"name": "logn-serve", "env": [{"name": "LOGN_STORE_URL", "valueFrom": None,
                                           "value": "sqlite:///var/lib/logn/stats.db"}]}]),
     "prod's LOGN_STORE_URL"),
    ("overlays: the PostgreSQL Service selects other pods", "k8s/postgres/service.yaml",
     set_("Service", ["spec", "selector", "app.kubernetes.io/name"], "postgres"),
     "does not select the PostgreSQL pods"),
    ("overlays: prod without its namespace", None,
     kustomization("k8s/overlays/prod/kustomization.yaml", lambda k: k.pop("namespace")),
     "objects should be in a namespace the overlay creates"),
    ("prometheus: the scrape job keeps the gRPC port", "k8s/base/prometheus-config.yaml",
     call("ConfigMap", "data",
          lambda d: d.update({"prometheus.yml": d["prometheus.yml"].replace('"8501"', '"8500"')})),
     "the Prometheus ConfigMap needs"),
    # Compose and Grafana
    ("compose: an image without a tag", "compose/docker-compose.yml",
     lambda docs: docs[0]["services"]["grafana"].update({"image": "grafana/grafana"}),
     "is not pinned"),
    ("grafana: the model and build panel removed", None,
     lambda deploy: drop_dashboard_panel(deploy, "Model and build"), "no panel queries"),
]


def drop_dashboard_panel(deploy, title):
    path = os.path.join(deploy, "compose", "grafana", "dashboards", "logn-serve.json")
    with open(path) as f:
        dash = json.load(f)
    dash["panels"] = [p for p in dash["panels"] if p.get("title") != title]
    with open(path, "w") as f:
        json.dump(dash, f)


def apply(deploy, file, edit):
    if file is None:
        edit(deploy)
    else:
        edit_yaml(os.path.join(deploy, file), edit)


def run(deploy_dir, repo, kubectl, check, only=None, jobs=4):
    """check(deploy_copy) raises CheckError; returns how many mutations it let through. The
    mutations run in `jobs` threads (the time goes into kubectl processes)."""
    deploy_common.QUIET = True
    with tempfile.TemporaryDirectory(prefix="logn-deploy-mutations-") as tmp:
        if only is None:
            clean = copy_deploy(deploy_dir, os.path.join(tmp, "clean"))
            try:
                check(clean)
            except CheckError as e:
                print(f"FAIL: the unbroken copy of deploy/ fails: {e}")
                return 1
            print("ok: mutations: the unbroken copy of deploy/ passes", flush=True)
        selected = [m for m in MUTATIONS if only is None or m[0] == only]
        if not selected:
            print(f"FAIL: no mutation {only!r}")
            return 1

        def one(n):
            ident, file, edit, expected = selected[n]
            work = os.path.join(tmp, f"m{n}")
            deploy = copy_deploy(deploy_dir, work)
            try:
                apply(deploy, file, edit)
                check(deploy)
                return False, f"FAIL: mutation {ident!r}: the checks passed on the broken copy"
            except CheckError as e:
                message = str(e)
                if expected in message:
                    return True, f"ok: mutation {ident!r} caught: {message[:200]}"
                return False, (f"FAIL: mutation {ident!r}: failed for another reason than "
                               f"{expected!r}: {message}")
            except Exception:  # a crash of the checks is not a catch
                return False, f"FAIL: mutation {ident!r}: the checks crashed:\n" + \
                    traceback.format_exc()
            finally:
                shutil.rmtree(work)

        missed = 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            for caught, line in pool.map(one, range(len(selected))):
                print(line, flush=True)
                missed += not caught
        print(f"mutations: {len(selected) - missed} passed, {missed} failed", flush=True)
        return missed
