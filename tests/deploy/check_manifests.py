#!/usr/bin/env python3
"""Checks of everything under deploy/ and of the Dockerfile (CTest: deploy_manifests).

No container engine or cluster runs in CI. deploy/k8s is rendered with `kubectl kustomize` (every
kustomization root, and the plain manifests through a one-file kustomization), and the objects a
cluster would get go through the reviewer's checks in k8s_checks.py: gRPC probes on the health
service, resources, securityContext, HPA and PDB against the replicas, no Secret or credential in
the manifests, the sharded Job's index wiring, and the rest. Compose, the Grafana provisioning and
the Dockerfile are checked here too. Then each check is shown to fire: manifest_mutations.py
breaks a copy of deploy/ in a temp dir, one way per check, and every broken copy must fail with
the expected message. (The schemas: check_k8s_schemas.py; the dashboard's metric names against a
real server: check_dashboard_metrics.py.)

    check_manifests.py [--repo DIR] [--kubectl PATH] [--no-mutations] [--only-mutation ID]

kubectl: --kubectl, else tools/k8s-validator/bin/kubectl (./scripts/install-k8s-validator), else
the one on PATH; it needs kustomize v5. Exits 1 on the first failing check or on any mutation that
goes unnoticed.
"""
import argparse
import fnmatch
import json
import os
import re
import shlex
import sys

from deploy_common import (CheckError, fail, find_kubectl, load_yaml_docs, ok, repo_root, require,
                           split_image)
from k8s_checks import check_image_model_path, check_k8s, flag_value, server_flags

# Plain commands a Dockerfile RUN may use besides scripts/.
PLAIN_COMMANDS = {"useradd", "groupadd", "mkdir", "chown", "chmod", "ln", "rm", "true", "echo",
                  "install", "test", "cp", "mv", "touch", "ldconfig"}
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


def parse_all_files(deploy_dir):
    count = {"yaml": 0, "json": 0}
    for root, _, files in os.walk(deploy_dir):
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
    require(count["yaml"] > 0, f"no YAML files under {deploy_dir}")
    ok(f"parsed {count['yaml']} YAML and {count['json']} JSON files under deploy/")


def check_server_args(args, flags, where):
    for a in args:
        require(a.startswith("--"), f"{where}: argument {a!r} is not a --flag=value")
        m = re.match(r"--([\w-]+)(=|$)", a)
        require(m and m.group(1) in flags, f"{where}: {a!r}: logn_server has no flag "
                                           f"--{m.group(1) if m else a} (server/grpc/main.cc)")


def check_image_pinned(image, where):
    name, tag, digest = split_image(image)
    require(digest or (tag and tag != "latest"),
            f"{where}: image {image!r} is not pinned by a tag (or digest)")


# ---------------------------------------------------------------------------------------------
# Compose and Grafana


def check_compose(deploy_dir, repo, flags):
    base = os.path.join(deploy_dir, "compose")
    path = os.path.join(base, "docker-compose.yml")
    compose = load_yaml_docs(path)[0]
    services = compose.get("services", {})
    require({"logn", "postgres", "prometheus", "grafana"} <= set(services),
            f"{path}: needs services logn, postgres, prometheus, grafana")
    logn = services["logn"]
    build = logn.get("build", {})
    require(os.path.normpath(os.path.join(base, build.get("context", ""))) ==
            os.path.normpath(os.path.join(deploy_dir, ".."))
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

    # Debian's docker-compose (1.29, what scripts/compose-test runs) refuses a top-level `name:`;
    # the project name is in .env, which Compose v1 and v2 both read.
    require("name" not in compose, f"{path}: no top-level name: (Compose v1 refuses it); set "
                                   f"COMPOSE_PROJECT_NAME in {base}/.env")
    local_path = os.path.join(base, "docker-compose.local.yml")
    if os.path.isfile(local_path):
        local = load_yaml_docs(local_path)[0]
        for name, svc in local.get("services", {}).items():
            require(name in services, f"{local_path}: service {name} is not in {path}")
            if "build" in svc:
                build_ctx = svc["build"] if isinstance(svc["build"], str) else svc["build"]["context"]
                dockerfile = os.path.join(base, build_ctx, "Dockerfile")
                require(os.path.isfile(dockerfile), f"{local_path}: {name}: no {dockerfile}")
                froms = [r for w, r in dockerfile_instructions(dockerfile) if w == "FROM"]
                require(froms == ["debian:bookworm-slim"], f"{dockerfile}: a local stand-in "
                                                           f"should be FROM debian:bookworm-slim")
                check_image_pinned(svc.get("image", ""), f"{local_path}: service {name}")

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
       "Prometheus scraping logn:8501, Grafana provisioning the dashboard; the local override's "
       "stand-ins FROM debian:bookworm-slim")


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
    require({"test", "install-deps"} <= ci, ".ci/run should reach scripts/test and install-deps")
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


def run_checks(deploy_dir, repo, kubectl, dockerfile=True):
    """Every check on deploy_dir (the real deploy/ or a broken copy); raises CheckError."""
    flags = server_flags(repo)
    parse_all_files(deploy_dir)
    check_k8s(deploy_dir, repo, kubectl)
    check_compose(deploy_dir, repo, flags)
    if dockerfile:
        check_dockerfile(repo, flags)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", default=repo_root())
    parser.add_argument("--kubectl", help="a kubectl with kustomize v5 (default: see above)")
    parser.add_argument("--no-mutations", action="store_true",
                        help="only check the real deploy/, do not prove the checks on copies")
    parser.add_argument("--only-mutation", help="run only the mutation with this id")
    args = parser.parse_args()
    repo = os.path.abspath(args.repo)
    deploy_dir = os.path.join(repo, "deploy")
    try:
        kubectl, version = find_kubectl(repo, args.kubectl)
        ok(f"kubectl {kubectl}: {version}")
        if not args.only_mutation:
            run_checks(deploy_dir, repo, kubectl)
            print("deploy manifests: all checks passed", flush=True)
    except CheckError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    if args.no_mutations:
        return 0
    import manifest_mutations
    missed = manifest_mutations.run(deploy_dir, repo, kubectl,
                                    lambda d: run_checks(d, repo, kubectl, dockerfile=False),
                                    only=args.only_mutation)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
