#!/usr/bin/python3
"""The README's main job: LogN Serve end to end on the bundled demo detectors.

For each model under models/: start logn_server with an embedded SQLite store, stream the training
split through Calibrate twice (images with ground truth; version 1, activated: RoIs sampled from
the RPN's proposals as in training; version 2: from the model's output candidates, the fallback),
run `logn compare` on val with each (one forward pass per image, every setting from it), stop the
server. Then print the main
table (none / LogA / plain BN / LogN), the paper's Table 2 and Table 3 layouts, and draw two
plots: per-class logit mean and standard deviation against training frequency (the paper's
Fig. 2) and per-group AP before / after calibration.

Usage (scripts/demo does the build and calls this):
  /usr/bin/python3 tools/demo/run_demo.py --build build --out out/demo [--scale full|tiny]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = ("demo_ce", "demo_logn")
MAIN_ROWS = (("none", "none"), ("loga", "LogA"), ("bn", "plain BN (μ, σ on C+1, no β)"),
             ("logn", "LogN (μ, σ, β = min μ)"))
TABLE2_ROWS = (("t2:-", " ", " ", " "), ("t2:mu", "✓", " ", " "), ("t2:sigma", " ", "✓", " "),
               ("t2:beta", " ", " ", "✓"), ("t2:mu+sigma+beta", "✓", "✓", "✓"))
TABLE3_ROWS = (("t3:const-4", "-4"), ("t3:const-12", "-12"), ("t3:background_mean", "μ_bg"),
               ("t3:max_fg_mean", "μ_max"), ("t3:avg_fg_mean", "μ_avg"),
               ("t3:min_fg_mean", "μ_min"))
METRICS = ("AP", "AP50", "AP75", "APr", "APc", "APf")


def log(message):
    print(message, file=sys.stderr, flush=True)


def run(argv, **kwargs):
    log("$ " + " ".join(argv))
    return subprocess.run(argv, check=True, **kwargs)


class Server:
    """logn_server on a free loopback port, stopped with SIGTERM (it drains, then exits 0)."""

    def __init__(self, binary, model, store, work):
        self.port_file = os.path.join(work, "ports")
        if os.path.exists(self.port_file):
            os.remove(self.port_file)
        self.log = open(os.path.join(work, "server.log"), "w")
        self.process = subprocess.Popen(
            [binary, "--listen=127.0.0.1:0", "--metrics_listen=", "--port_file=" + self.port_file,
             "--model=" + model, "--store=sqlite://" + store, "--intra_op_threads=2",
             "--executor_threads=2"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while not os.path.exists(self.port_file):
            if self.process.poll() is not None or time.time() > deadline:
                raise SystemExit("logn_server did not start; see " + self.log.name)
            time.sleep(0.1)
        ports = dict(line.strip().split("=") for line in open(self.port_file) if "=" in line)
        self.address = "127.0.0.1:" + ports["grpc"]

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.log.close()
        if code != 0:
            raise SystemExit("logn_server exited with %d; see %s" % (code, self.log.name))


def fmt(value):
    return "  -  " if value is None or value < 0 else "%5.1f" % (100 * value)


def print_table(title, header, rows):
    print("\n" + title)
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def plots(out, results):
    """Fig. 2 (per-class logit mean / std against training frequency) and per-group AP bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"r": "tab:red", "c": "tab:orange", "f": "tab:blue"}
    for name, marker in zip(results, ("o", "^")):
        stats, info = results[name]["statistics"], results[name]["info"]
        classes = info["manifest"]["classes"]
        bg_first = info["manifest"].get("background", "") == "BACKGROUND_POSITION_FIRST"
        mean = np.array(stats["mean"], dtype=float)
        std = np.sqrt(np.array(stats["variance"], dtype=float))
        offset = 1 if bg_first else 0
        counts = np.array([float(c.get("instance_count", c.get("instanceCount", 1))) for c in classes])
        groups = [{"FREQUENCY_GROUP_RARE": "r", "FREQUENCY_GROUP_COMMON": "c"}.get(
            c.get("frequency", ""), "f") for c in classes]
        for ax, values, label in ((axes[0], mean, "logit mean μ"), (axes[1], std, "logit std σ")):
            fg = values[offset:offset + len(classes)]
            ax.scatter(counts, fg, s=14, marker=marker, c=[colors[g] for g in groups],
                       alpha=0.8, label=name)
            ax.set_xscale("log")
            ax.set_xlabel("training instances of the class (log)")
            ax.set_ylabel(label)
    axes[0].set_title("Per-class logit mean vs frequency")
    axes[1].set_title("Per-class logit std vs frequency")
    axes[1].legend(title="model (o, ^); r/c/f = red/orange/blue")
    fig.tight_layout()
    fig2 = os.path.join(out, "logit_statistics.png")
    fig.savefig(fig2, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, name in zip(axes[0], results):
        table = {s["setting"]: s for s in results[name]["compare"]["settings"]}
        settings = [key for key, _ in MAIN_ROWS if key in table]
        x = np.arange(3)
        width = 0.8 / max(1, len(settings))
        for i, key in enumerate(settings):
            values = [max(0.0, table[key][m] or 0.0) * 100 for m in ("APr", "APc", "APf")]
            ax.bar(x + i * width, values, width, label=key)
        ax.set_xticks(x + width * (len(settings) - 1) / 2)
        ax.set_xticklabels(["APr", "APc", "APf"])
        ax.set_title(name)
        ax.set_ylabel("AP (%)")
        ax.legend()
    fig.tight_layout()
    bars = os.path.join(out, "group_ap.png")
    fig.savefig(bars, dpi=110)
    plt.close(fig)
    return fig2, bars


def print_sampling_table(results):
    """LogN and plain BN with statistics from proposals (version 1) vs candidates (version 2)."""
    rows = []
    for name in results:
        for version, source, compare in ((1, "proposals", results[name]["compare"]),
                                         (2, "candidates", results[name]["compare_candidates"])):
            sampling = results[name]["sampling"][version]
            rois = int(sampling.get("rois", 0))
            images = max(1, int(sampling.get("images", 0)))
            positives = int(sampling.get("positive_rois", 0))
            table = {s["setting"]: s for s in compare["settings"]}
            rows.append([name, source, "%d" % rois, "%.0f" % (rois / images),
                         "%.1f %%" % (100.0 * positives / max(1, rois)),
                         *(fmt(table[key][m]) for key in ("logn", "bn") for m in ("AP", "APr"))])
    print_table("Statistics from the RPN's proposals (as training samples) vs the model's output "
                "candidates (the fallback): 512 RoIs per image requested, at most 25 % positives",
                ["model", "RoIs from", "RoIs", "RoIs / image", "positives", "LogN AP", "LogN APr",
                 "BN AP", "BN APr"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--out", default=os.path.join(ROOT, "out", "demo"))
    parser.add_argument("--scale", choices=("full", "tiny"), default="full",
                        help="tiny: a few dozen images, for the test suite")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args()

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    logn = os.path.join(args.build, "client", "cli", "logn")
    server_binary = os.path.join(args.build, "server", "grpc", "logn_server")
    data = os.path.join(out, "data-" + args.scale)
    if not os.path.exists(os.path.join(data, "val.json")):
        run(["/usr/bin/python3", os.path.join(ROOT, "tools", "longtail_data", "generate.py"),
             "--out", data, "--seed", "0", "--scale", args.scale])

    started = time.time()
    results = {}
    for name in args.models:
        work = os.path.join(out, name)
        os.makedirs(work, exist_ok=True)
        store = os.path.join(work, "stats.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(store + suffix):
                os.remove(store + suffix)
        server = Server(server_binary, os.path.join(ROOT, "models", name, "model.pt"), store, work)
        try:
            common = ["--server", server.address]
            calibrate = [logn, "calibrate", *common, "--dataset", os.path.join(data, "train.json"),
                         "--images", os.path.join(data, "train")]
            # Version 1 (active): RoIs sampled from the RPN's proposals, as training sampled them.
            run([*calibrate, "--activate", "--roi-source", "proposals",
                 "--description", "demo: %s train split, RoIs from proposals" % args.scale])
            # Version 2: the fallback for models without proposals (their output candidates).
            run([*calibrate, "--roi-source", "candidates",
                 "--description", "demo: %s train split, RoIs from candidates" % args.scale])
            compare_file = os.path.join(work, "compare.json")
            candidates_file = os.path.join(work, "compare_candidates.json")
            for version, out_file in ((1, compare_file), (2, candidates_file)):
                run([logn, "compare", *common, "--gt", os.path.join(data, "val.json"),
                     "--images", os.path.join(data, "val"), "--version", str(version),
                     "--out", out_file])
            statistics_file = os.path.join(work, "statistics_v1.json")
            run([logn, "stats", "export", "active", *common, "--out", statistics_file])
            sampling = {}
            for version in (1, 2):
                shown = json.loads(run([logn, "stats", "show", str(version), *common, "--json"],
                                       capture_output=True, text=True).stdout)
                sampling[version] = shown["statistics_version"].get("sampling", {})
            info = json.loads(run([logn, "info", *common], capture_output=True, text=True).stdout)
        finally:
            server.stop()
        exported = json.load(open(statistics_file))
        results[name] = {"compare": json.load(open(compare_file)), "info": info,
                         "compare_candidates": json.load(open(candidates_file)),
                         "sampling": sampling, "statistics": exported.get("statistics", exported)}

    header = ["model", "setting", *METRICS]
    rows = []
    for name in results:
        table = {s["setting"]: s for s in results[name]["compare"]["settings"]}
        for key, label in MAIN_ROWS:
            if key in table:
                rows.append([name, label, *(fmt(table[key][m]) for m in METRICS)])
    print("\nLogN Serve demo (%s scale): statistics from Calibrate over the training split, "
          "val evaluated with the LVIS protocol, AP in %%." % args.scale)
    print_table("Main table", header, rows)
    for name in results:
        table = {s["setting"]: s for s in results[name]["compare"]["settings"]}
        print_table("Table 2 layout (%s): components of LogN" % name,
                    ["μ", "σ", "β", *METRICS],
                    [[mu, sigma, beta, *(fmt(table[key][m]) for m in METRICS)]
                     for key, mu, sigma, beta in TABLE2_ROWS if key in table])
        print_table("Table 3 layout (%s): choice of β" % name, ["β", *METRICS],
                    [[label, *(fmt(table[key][m]) for m in METRICS)]
                     for key, label in TABLE3_ROWS if key in table])
    print_sampling_table(results)
    summary = os.path.join(out, "results.json")
    with open(summary, "w") as f:
        json.dump({name: {"proposals": r["compare"], "candidates": r["compare_candidates"],
                          "sampling": r["sampling"]} for name, r in results.items()}, f, indent=1)
    fig2, bars = plots(out, results)
    print("\nResults: %s (per model: compare.json, statistics_v1.json, server.log)" % summary)
    print("Plots:   %s, %s" % (fig2, bars))
    print("Servers, calibration and evaluation took %.0f s." % (time.time() - started))


if __name__ == "__main__":
    main()
