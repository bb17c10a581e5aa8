#!/usr/bin/env python3
"""CTest deploy_k8s_schemas: every object deploy/k8s gives a cluster, validated against the
Kubernetes OpenAPI schemas, without a cluster.

Renders every kustomization root (base, postgres, overlays/dev, overlays/prod) with `kubectl
kustomize`, and every plain manifest (jobs/calibrate-sharded.yaml) through a one-file
kustomization, and pipes each rendering to tools/k8s-validator/validate.js: the npm package
kubernetes-models (pinned in tools/k8s-validator/package.json) validates each object with its
kind's schema, unknown fields and metadata syntax are refused as the API server would, and a kind
without a schema (a CRD) is an error. Then it shows that the validator fails where it should:
broken copies of deploy/ in a temp dir (a string port, a misspelt field, a custom resource, a bad
enum, quantity or name, a missing required field, and a bad plain manifest) must each be refused.

    check_k8s_schemas.py [--repo DIR] [--kubectl PATH] [--node PATH]

Needs ./scripts/install-k8s-validator (tools/k8s-validator/node_modules and bin/kubectl).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from deploy_common import (CheckError, copy_deploy, edit_yaml, fail, find_kubectl, ok,
                           render_all, repo_root, require)

SERVER_C = ["spec", "template", "spec", "containers", 0]

# (id, file under deploy/k8s, edit(docs), text expected in the validator's output)
BROKEN = [
    ("a probe port as a string", "base/deployment.yaml",
     lambda d: d[0]["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]
     .update({"port": "8500"}), "livenessProbe.grpc.port: must be integer"),
    ("a misspelt field", "base/deployment.yaml",
     lambda d: d[0]["spec"]["template"]["spec"]["containers"][0]["securityContext"]
     .update({"readOnlyRootFileSystem": True}),
     "securityContext.readOnlyRootFileSystem: unknown field"),
    ("a custom resource (no schema)", "base/pdb.yaml",
     lambda d: d.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                         "metadata": {"name": "logn-serve"},
                         "spec": {"endpoints": [{"port": "metrics"}]}}),
     'no schema for apiVersion "monitoring.coreos.com/v1" kind "ServiceMonitor"'),
    ("a value outside an enum", "overlays/prod/deployment-patch.yaml",
     lambda d: d[0]["spec"]["strategy"].update({"type": "Rolling"}),
     'spec.strategy.type: must be one of ["Recreate","RollingUpdate"]'),
    ("a malformed quantity", "postgres/statefulset.yaml",
     lambda d: d[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
     .update({"memory": "1 GB"}), 'resources.limits.memory: must be number or must match format'),
    ("a Service port without its port number", "base/service.yaml",
     lambda d: d[0]["spec"]["ports"][0].pop("port"),
     "spec.ports[0]: must have required property port"),
    ("a name that is not a DNS label", "base/service-replicas.yaml",
     lambda d: d[0]["metadata"].update({"name": "Logn_Replicas"}),
     'metadata.name "Logn_Replicas": not a valid Service name'),
    ("a plain manifest (the Job) with a string count", "jobs/calibrate-sharded.yaml",
     lambda d: d[0]["spec"].update({"completions": "3"}), "spec.completions: must be integer"),
]


def find_validator(repo, node):
    script = os.path.join(repo, "tools", "k8s-validator", "validate.js")
    modules = os.path.join(repo, "tools", "k8s-validator", "node_modules", "kubernetes-models")
    require(os.path.isdir(modules), f"{modules} missing: run ./scripts/install-k8s-validator")
    node = node or shutil.which("node")
    require(node, "node is missing: run ./scripts/install-k8s-validator (it installs Debian's "
                  "nodejs)")
    return [node, script]


def validate(validator, name, text):
    """(exit code, output) of the validator on one rendering."""
    out = subprocess.run(validator + ["--label", name], input=text, capture_output=True,
                         text=True, timeout=120)
    return out.returncode, out.stdout + out.stderr


def validate_all(validator, kubectl, k8s_dir, verbose):
    failures, total = [], 0
    for name, text in render_all(kubectl, k8s_dir).items():
        code, output = validate(validator, name, text)
        if verbose:
            print(output, end="", flush=True)
        total += sum(1 for line in output.splitlines() if line.startswith("ok: "))
        if code != 0:
            failures.append((name, output))
    return failures, total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", default=repo_root())
    parser.add_argument("--kubectl")
    parser.add_argument("--node")
    args = parser.parse_args()
    repo = os.path.abspath(args.repo)
    try:
        kubectl, version = find_kubectl(repo, args.kubectl)
        ok(f"kubectl {kubectl}: {version}")
        validator = find_validator(repo, args.node)
        k8s_dir = os.path.join(repo, "deploy", "k8s")
        failures, total = validate_all(validator, kubectl, k8s_dir, verbose=True)
        require(not failures, "invalid objects in " + ", ".join(n for n, _ in failures))
        require(total > 0, "no object validated")
        ok(f"all {total} objects valid")

        missed = []
        with tempfile.TemporaryDirectory(prefix="logn-k8s-schemas-") as tmp:
            for n, (ident, file, edit, expected) in enumerate(BROKEN):
                deploy = copy_deploy(os.path.join(repo, "deploy"), os.path.join(tmp, str(n)))
                edit_yaml(os.path.join(deploy, "k8s", file), edit)
                failures, _ = validate_all(validator, kubectl, os.path.join(deploy, "k8s"),
                                           verbose=False)
                output = "\n".join(o for _, o in failures)
                hits = [line for line in output.splitlines() if expected in line]
                if hits:
                    print(f"ok: broken copy refused ({ident}): {hits[0]}", flush=True)
                else:
                    missed.append(ident)
                    print(f"FAIL: broken copy ({ident}) not refused with {expected!r}; "
                          f"validator output:\n{output or '(all valid)'}", flush=True)
        print(f"k8s schemas: {len(BROKEN) - len(missed)} passed, {len(missed)} failed "
              f"(broken copies)")
        if missed:
            fail(f"the validator let through: {missed}")
    except CheckError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
