"""Shared by the tests/deploy checks: failures, YAML loading, and rendering deploy/k8s with
`kubectl kustomize` (no cluster needed), every kustomization root and every plain manifest.
"""
import os
import re
import shutil
import subprocess
import tempfile

import yaml

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class CheckError(Exception):
    pass


def fail(message):
    raise CheckError(message)


QUIET = False  # the mutation runner silences the ok lines of the checks it runs on copies


def ok(message):
    if not QUIET:
        print(f"ok: {message}", flush=True)


def require(condition, message):
    if not condition:
        fail(message)


def load_yaml_docs(path):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        fail(f"{path}: invalid YAML: {e}")


def repo_root():
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


# ---------------------------------------------------------------------------------------------
# kubectl


def kubectl_version(kubectl):
    try:
        out = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def find_kubectl(repo, explicit=None):
    """The kubectl to render with: --kubectl, else tools/k8s-validator/bin/kubectl (what
    scripts/install-k8s-validator approved), else kubectl on PATH; it must have kustomize v5+."""
    candidates = [explicit] if explicit else [
        os.path.join(repo, "tools", "k8s-validator", "bin", "kubectl"), shutil.which("kubectl")]
    for kubectl in candidates:
        if not kubectl or not os.access(kubectl, os.X_OK):
            continue
        version = kubectl_version(kubectl) or ""
        m = re.search(r"^Kustomize Version: v(\d+)\.", version, re.M)
        if m and int(m.group(1)) >= 5:
            return kubectl, " ".join(version.split())
        require(not explicit, f"{kubectl}: no kustomize v5 or newer in `kubectl version "
                              f"--client`: {version.strip()!r}")
    fail("no kubectl with kustomize v5 or newer: run ./scripts/install-k8s-validator "
         "(it links the machine's kubectl or installs a pinned one into tools/k8s-validator/bin)")


def kustomize(kubectl, directory):
    """`kubectl kustomize DIRECTORY`: the YAML text a cluster would get."""
    try:
        out = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True,
                             timeout=120)
    except subprocess.TimeoutExpired:
        fail(f"kubectl kustomize {directory} timed out")
    require(out.returncode == 0, f"kubectl kustomize {directory} failed: {out.stderr.strip()}")
    return out.stdout


def parse_rendered(text, where):
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        fail(f"{where}: kubectl's output is not YAML: {e}")
    for d in docs:
        require(isinstance(d, dict) and d.get("kind") and isinstance(d.get("metadata"), dict),
                f"{where}: an object without kind or metadata: {str(d)[:200]}")
    return docs


def kustomization_roots(k8s_dir):
    """Every directory under deploy/k8s with a kustomization.yaml, relative, sorted."""
    roots = []
    for root, _, files in os.walk(k8s_dir):
        if "kustomization.yaml" in files:
            roots.append(os.path.relpath(root, k8s_dir))
    return sorted(roots)


def plain_manifests(k8s_dir):
    """YAML files under deploy/k8s that no kustomization uses: applied with `kubectl apply -f`."""
    used = set()
    for root in kustomization_roots(k8s_dir):
        directory = os.path.join(k8s_dir, root)
        k = load_yaml_docs(os.path.join(directory, "kustomization.yaml"))[0]
        used.add(os.path.join(directory, "kustomization.yaml"))
        entries = list(k.get("resources", []))
        entries += [p["path"] for p in k.get("patches", []) if "path" in p]
        entries += k.get("patchesStrategicMerge", [])
        for entry in entries:
            used.add(os.path.normpath(os.path.join(directory, entry)))
    plain = []
    for root, _, files in os.walk(k8s_dir):
        for name in sorted(files):
            path = os.path.normpath(os.path.join(root, name))
            if name.endswith((".yaml", ".yml")) and path not in used:
                plain.append(os.path.relpath(path, k8s_dir))
    return sorted(plain)


def render_plain(kubectl, path):
    """A plain manifest through kubectl too (a kustomization of that one file in a temp dir), so
    that it is parsed and normalised exactly as the rendered roots are."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(path, os.path.join(tmp, "manifest.yaml"))
        with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
            f.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                    "resources:\n  - manifest.yaml\n")
        return kustomize(kubectl, tmp)


def render_all(kubectl, k8s_dir):
    """{name: YAML text}: each kustomization root ("overlays/prod") and each plain manifest
    ("jobs/calibrate-sharded.yaml"), as kubectl renders them."""
    out = {}
    for root in kustomization_roots(k8s_dir):
        out[root] = kustomize(kubectl, os.path.join(k8s_dir, root))
    for manifest in plain_manifests(k8s_dir):
        out[manifest] = render_plain(kubectl, os.path.join(k8s_dir, manifest))
    return out


# ---------------------------------------------------------------------------------------------
# Objects


def pod_specs(obj):
    spec = obj.get("spec") or {}
    if obj.get("kind") in WORKLOADS:
        yield spec.get("template", {}).get("spec", {})
    elif obj.get("kind") == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    elif obj.get("kind") == "Pod":
        yield spec


def pod_labels(obj):
    if obj.get("kind") == "Pod":
        return obj["metadata"].get("labels", {})
    return ((obj.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels", {})


def containers_of(obj, init=True):
    for pod in pod_specs(obj):
        for c in (pod.get("initContainers", []) if init else []) + pod.get("containers", []):
            yield pod, c


def split_image(image):
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    name, tag = image, None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = image.rsplit(":", 1)
    return name, tag, digest


def find(objects, kind, name=None):
    return [o for o in objects
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects, kind, name, where):
    found = find(objects, kind, name)
    require(len(found) == 1, f"{where}: expected one {kind}/{name}, found {len(found)}")
    return found[0]


def selects(selector, labels):
    """matchLabels / matchExpressions (In, NotIn, Exists, DoesNotExist) against pod labels."""
    if not selector:
        return False
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}  # a Service's plain map
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Mutations: a copy of deploy/ in a temp dir, one file edited, and the check expected to fail.


def copy_deploy(deploy_dir, tmp):
    dest = os.path.join(tmp, "deploy")
    shutil.copytree(deploy_dir, dest)
    return dest


def edit_yaml(path, edit):
    """Loads every document of path, calls edit(docs), which changes them in place, and writes
    them back (comments are lost: this is a throwaway copy)."""
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    edit(docs)
    with open(path, "w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)
