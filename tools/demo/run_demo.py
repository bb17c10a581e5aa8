#!/usr/bin/python3
"""The README's main job: LogN Serve end to end on the bundled demo detectors.

For each model under models/ (demo_ce: linear classifier, plain CE; demo_cosine_ce: cosine
classifier, plain CE; demo_logn: cosine classifier trained with BatchNorm on its logits, the
official LogN regime): start logn_server with an embedded SQLite store; stream the training split
through Calibrate (version 1, activated: RoIs sampled from the RPN's proposals as training sampled
them); for a model that ships the official statistics pass (models/NAME/official_stats.pth) import
it as version 2, as a user with a released checkpoint would; then `logn tune` on val: one forward
pass per image, every setting of the grid evaluated locally, chosen on a tuning half and reported
on the other half, for three splits; --apply stores the choice as the model's default. Stop the
server. Then print, per model, the held-out table (tuned default, none, LogA, LogN with our
statistics, LogN with the official ones), the paper's Table 2 and Table 3 layouts (fixed settings,
all val images), and draw the plots.

Usage (scripts/demo does the build and calls this):
  /usr/bin/python3 tools/demo/run_demo.py --build build --out out/demo [--scale full|tiny]
      [--models demo_ce ...] [--with-candidates]
--with-candidates also calibrates from the model's output candidates (version 3, the fallback for
models without proposals) and tunes with it: the proposals-vs-candidates comparison of
docs/demo-detectors.md.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = ("demo_ce", "demo_cosine_ce", "demo_logn")
SEEDS = "0,1,2"
METRICS = ("AP", "AP50", "AP75", "APr", "APc", "APf")
# Fixed settings (not chosen on val), by their `logn tune` names.
TABLE2_ROWS = (("none", " ", " ", " "), ("logn(a=1,g=0,beta=off)", "✓", " ", " "),
               ("logn(a=0,g=1,beta=off)", " ", "✓", " "),
               ("logn(a=0,g=0,beta=min_fg_mean)", " ", " ", "✓"),
               ("logn(a=1,g=1,beta=min_fg_mean)", "✓", "✓", "✓"))
TABLE3_ROWS = (("logn(a=1,g=1,beta=background_mean)", "μ_bg"),
               ("logn(a=1,g=1,beta=max_fg_mean)", "μ_max"),
               ("logn(a=1,g=1,beta=avg_fg_mean)", "μ_avg"),
               ("logn(a=1,g=1,beta=min_fg_mean)", "μ_min"))
HELD_OUT_LABELS = {"tuned": "tuned default (chosen on the other half)", "none": "none",
                   "loga": "LogA (τ = 1)", "logn": "LogN, our statistics (proposals)"}


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


def fmt_spread(entry):
    return "%5.1f ± %.1f" % (100 * entry["mean"], 100 * entry["spread"]) if entry["mean"] >= 0 \
        else "  -  "


def print_table(title, header, rows):
    print("\n" + title)
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def import_official(logn, common, model_dir, name, work):
    """The official statistics pass (a checkpoint's BN buffers) through the importer: version 2."""
    checkpoint = os.path.join(model_dir, "official_stats.pth")
    if not os.path.exists(checkpoint):
        return None
    converted = os.path.join(work, "official_stats.json")
    manifest = json.load(open(os.path.join(model_dir, "model.json")))
    first = manifest.get("background") == "BACKGROUND_POSITION_FIRST"
    run(["/usr/bin/python3", os.path.join(ROOT, "tools", "import_mmdet_logn.py"), checkpoint,
         "-o", converted, "--model-name", name, "--model-file",
         os.path.join(model_dir, "model.pt"), "--momentum", "0.00005",
         "--background", "first" if first else "last", "--description",
         "official statistics pass (lr 0, BN momentum 5e-5), imported"])
    out = run([logn, "stats", "import", converted, *common, "--json"], capture_output=True,
              text=True).stdout
    return int(json.loads(out)["version"])


def demo_model(name, args, logn, server_binary, data, out):
    """One model: calibrate, import, tune (--apply); returns what the tables need."""
    work = os.path.join(out, name)
    os.makedirs(work, exist_ok=True)
    store = os.path.join(work, "stats.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(store + suffix):
            os.remove(store + suffix)
    model_dir = os.path.join(args.models_dir, name)
    server = Server(server_binary, os.path.join(model_dir, "model.pt"), store, work)
    try:
        common = ["--server", server.address]
        calibrate = [logn, "calibrate", *common, "--dataset", os.path.join(data, "train.json"),
                     "--images", os.path.join(data, "train")]
        # Version 1 (active): RoIs sampled from the RPN's proposals, as training sampled them.
        run([*calibrate, "--activate", "--roi-source", "proposals",
             "--description", "demo: %s train split, RoIs from proposals" % args.scale])
        official = import_official(logn, common, model_dir, name, work)
        tune = [logn, "tune", *common, "--gt", os.path.join(data, "val.json"), "--images",
                os.path.join(data, "val"), "--seeds", SEEDS]
        references = [] if official is None else ["--reference-version", str(official)]
        report_file = os.path.join(work, "tune.json")
        run([*tune, "--version", "1", *references, "--report", report_file, "--heatmap",
             os.path.join(work, "tune_heatmap.svg"), "--apply"])
        candidates_report = None
        if args.with_candidates:
            run([*calibrate, "--roi-source", "candidates",
                 "--description", "demo: %s train split, RoIs from candidates" % args.scale])
            candidates_report = os.path.join(work, "tune_candidates.json")
            version = 3 if official is not None else 2
            run([*tune, "--version", str(version), "--report", candidates_report])
        statistics_file = os.path.join(work, "statistics_v1.json")
        run([logn, "stats", "export", "1", *common, "--out", statistics_file])
        info = json.loads(run([logn, "info", *common, "--json"], capture_output=True,
                              text=True).stdout)
    finally:
        server.stop()
    exported = json.load(open(statistics_file))
    return {"report": json.load(open(report_file)), "info": info, "official_version": official,
            "candidates": json.load(open(candidates_report)) if candidates_report else None,
            "statistics": exported.get("statistics", exported)}


def print_model_tables(name, result):
    report = result["report"]
    labels = dict(HELD_OUT_LABELS)
    if result["official_version"] is not None:
        labels["logn@v%d" % result["official_version"]] = "LogN, official statistics (imported)"
    rows = []
    for entry in report["heldout"]:
        label = labels.get(entry["setting"], entry["setting"])
        rows.append([label, *(fmt_spread(entry[m]) for m in METRICS)])
    sizes = report["splits"][0]
    print_table("%s: held-out val images (mean ± spread over splits %s; about %d of %d images "
                "held out each time), AP in %%" % (
                    name, SEEDS, sizes["heldout_images"],
                    sizes["heldout_images"] + sizes["tuning_images"]),
                ["setting", *METRICS], rows)
    print("chosen per split (tuning half, objective %s): %s; default stored: %s" % (
        report["objective"], ", ".join(s["chosen"] for s in report["splits"]),
        result["info"].get("default_calibration", {}).get("name", "?")))
    settings = {s["setting"]: s for s in report["settings"]}
    print_table("%s, Table 2 layout (fixed settings, all val images): components of LogN" % name,
                ["μ", "σ", "β", *METRICS],
                [[mu, sigma, beta, *(fmt(settings[key]["all_images"][m]) for m in METRICS)]
                 for key, mu, sigma, beta in TABLE2_ROWS if key in settings])
    print_table("%s, Table 3 layout (fixed settings, all val images): choice of β" % name,
                ["β", *METRICS],
                [[label, *(fmt(settings[key]["all_images"][m]) for m in METRICS)]
                 for key, label in TABLE3_ROWS if key in settings])


def print_sampling_table(results):
    """LogN and plain BN with statistics from proposals vs candidates (--with-candidates)."""
    rows = []
    for name, result in results.items():
        if result["candidates"] is None:
            continue
        for source, report in (("proposals", result["report"]), ("candidates",
                                                                 result["candidates"])):
            settings = {s["setting"]: s["all_images"] for s in report["settings"]}
            rows.append([name, source, *(fmt(settings[key][m])
                                         for key in ("logn(a=1,g=1,beta=min_fg_mean)", "bn")
                                         for m in ("AP", "APr"))])
    if rows:
        print_table("Statistics from proposals vs output candidates (all val images)",
                    ["model", "RoIs from", "LogN AP", "LogN APr", "BN AP", "BN APr"], rows)


def plots(out, results):
    """Fig. 2 (per-class logit mean / std against training frequency) and held-out group AP."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"r": "tab:red", "c": "tab:orange", "f": "tab:blue"}
    for name, marker in zip(results, ("o", "^", "s")):
        stats, info = results[name]["statistics"], results[name]["info"]
        classes = info["manifest"]["classes"]
        bg_first = info["manifest"].get("background", "") == "BACKGROUND_POSITION_FIRST"
        mean = np.array(stats["mean"], dtype=float)
        std = np.sqrt(np.array(stats["variance"], dtype=float))
        offset = 1 if bg_first else 0
        counts = np.array([float(c.get("instance_count", c.get("instanceCount", 1)))
                           for c in classes])
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
    axes[1].legend(title="model (o, ^, s); r/c/f = red/orange/blue")
    fig.tight_layout()
    fig2 = os.path.join(out, "logit_statistics.png")
    fig.savefig(fig2, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, name in zip(axes[0], results):
        rows = [e for e in results[name]["report"]["heldout"]]
        x = np.arange(3)
        width = 0.8 / max(1, len(rows))
        for i, entry in enumerate(rows):
            values = [max(0.0, entry[m]["mean"]) * 100 for m in ("APr", "APc", "APf")]
            ax.bar(x + i * width, values, width, label=entry["setting"])
        ax.set_xticks(x + width * (len(rows) - 1) / 2)
        ax.set_xticklabels(["APr", "APc", "APf"])
        ax.set_title("%s (held-out)" % name)
        ax.set_ylabel("AP (%)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    bars = os.path.join(out, "group_ap.png")
    fig.savefig(bars, dpi=110)
    plt.close(fig)
    return fig2, bars


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--out", default=os.path.join(ROOT, "out", "demo"))
    parser.add_argument("--scale", choices=("full", "tiny"), default="full",
                        help="tiny: a few dozen images, for the test suite")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--models-dir", default=os.path.join(ROOT, "models"),
                        help="where the models' directories are (default: the bundled ones)")
    parser.add_argument("--with-candidates", action="store_true",
                        help="also calibrate from output candidates and tune with them")
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
    results = {name: demo_model(name, args, logn, server_binary, data, out)
               for name in args.models}

    print("\nLogN Serve demo (%s scale): statistics from Calibrate over the training split; "
          "`logn tune` chose each model's default on one half of val and reports the other "
          "half; LVIS protocol, AP in %%." % args.scale)
    for name, result in results.items():
        print_model_tables(name, result)
    print_sampling_table(results)
    summary = os.path.join(out, "results.json")
    with open(summary, "w") as f:
        json.dump({name: {"tune": r["report"], "official_version": r["official_version"],
                          "candidates": r["candidates"]} for name, r in results.items()}, f,
                  indent=1)
    fig2, bars = plots(out, results)
    print("\nResults: %s (per model: tune.json, tune_heatmap.svg, statistics_v1.json, "
          "server.log)" % summary)
    print("Plots:   %s, %s" % (fig2, bars))
    print("Servers, calibration, tuning and evaluation took %.0f s." % (time.time() - started))


if __name__ == "__main__":
    main()
