#!/usr/bin/python3
"""Trains a demo detector of the LogN paper's family on the long-tail benchmark and exports it.

A small two-stage detector (conv backbone + light FPN, RPN, grid_sample RoIAlign, RoI head with a
C+1 softmax classifier and class-agnostic box regression), trained from scratch with random RoI
sampling (512 RoIs per image, <= 25 % positives at IoU >= 0.5, proposals + ground truth), no
re-weighting, uniform image sampling unless --rfs-threshold. The RoI classifier:

  --classifier linear   a linear layer with bias (default)
  --classifier cosine   normalised weights and features x --temperature (20), no bias: the paper's
                        classifier; the exported logits are temperature * cos

and its training loss:

  --head ce    cross-entropy on the raw logits (the paper's Algorithm 1 calibrates such a model)
  --head logn  BatchNorm1d(C+1, affine=False) on the logits before the cross-entropy, as the
               official LogN code trains; the exported model outputs the RAW logits. After
               training, the official statistics pass (one epoch at lr 0, BN momentum 5e-5 from
               the trained running statistics) is written as official_stats.pth, an
               mmdetection-style checkpoint (background last) for tools/import_mmdet_logn.py

The shipped models: demo_logn = --classifier cosine --head logn (the official regime),
demo_cosine_ce = --classifier cosine --head ce, demo_ce = --classifier linear --head ce
(docs/demo-detectors.md).

Writes to --out: model.pt (TorchScript, the model contract of docs/model-contract.md, aten ops
only) and model.json (the manifest), train_log.txt, metrics.json and, with --eval, the val
results and metrics (uncalibrated, and with --preview LogA / plain BN / LogN (official inference
formula) / mu only / beta only from training-style RoI statistics, plus LogN from
official_stats.pth when there is one). --eval-only MODEL_PT evaluates an exported model instead of
training. Deterministic given --seed and --threads.

Examples:
  /usr/bin/python3 tools/longtail_data/generate.py --out /tmp/lt_full --seed 0 --scale full
  /usr/bin/python3 tools/train_demo_detector.py --data /tmp/lt_full --head logn --classifier cosine \
      --name demo_logn --out /tmp/runs/demo_logn --eval --preview
  /usr/bin/python3 tools/train_demo_detector.py --data /tmp/lt_full --head ce --out /tmp/runs/eval_ce \
      --eval-only models/demo_ce/model.pt --preview
  # The test suite's smoke run (tiny data, tiny model, a few iterations):
  /usr/bin/python3 tools/train_demo_detector.py --data /tmp/lt_tiny --head logn --tiny --out /tmp/m
"""

import argparse
import hashlib
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_detector import model as dm  # noqa: E402
from demo_detector import train as dt  # noqa: E402


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_model(net, train_split, name, args, log, stats):
    """Exports model.pt + model.json to --out, checks the contract; returns the metrics (None on a
    contract violation)."""
    loss_text = ("cross-entropy on the raw logits" if args.head == "ce" else
                 "BatchNorm1d(C+1, affine=False) on the logits before the cross-entropy (training only)")
    cls_text = ("a C+1 linear classifier" if args.classifier == "linear" else
                f"a C+1 cosine classifier (normalised weights and features, temperature {args.temperature:g}, "
                "no bias)")
    rfs_text = f"repeat-factor sampling t={args.rfs_threshold:g}" if args.rfs_threshold > 0 else "uniform image sampling"
    description = (
        f"LogN Serve demo detector ({'tiny' if args.tiny else 'full'}): conv backbone + FPN, RPN, "
        f"grid_sample RoIAlign, RoI head with {cls_text}, class-agnostic boxes; trained from "
        f"scratch on tools/longtail_data ({len(train_split)} images) for {args.iters} iterations x {args.batch} "
        f"images, seed {args.seed}, {rfs_text}, 512 random RoIs/image (25% positives), classifier loss: "
        f"{loss_text}. Outputs raw logits. tools/train_demo_detector.py")
    manifest = dt.manifest_for(name, description, train_split.categories, train_split.image_size())
    pt_path = os.path.join(args.out, "model.pt")
    dt.export(net, pt_path, manifest)
    problems = dt.check_contract(pt_path)
    if problems:
        log("CONTRACT VIOLATIONS: " + "; ".join(problems))
        return None
    size = os.path.getsize(pt_path)
    log(f"exported {pt_path} ({size / 1e6:.2f} MB, sha256 {sha256_of(pt_path)}); contract checks passed")
    return {"name": name, "head": args.head, "classifier": args.classifier, "temperature": args.temperature,
            "rfs_threshold": args.rfs_threshold, "seed": args.seed, "iters": args.iters, "batch": args.batch,
            "threads": args.threads, "model_bytes": size, **stats}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="tools/longtail_data output (train.json, val.json, images)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--head", choices=["ce", "logn"], required=True,
                   help="classifier loss: ce (plain cross-entropy) or logn (BatchNorm1d(C+1) on the logits first)")
    p.add_argument("--classifier", choices=["linear", "cosine"], default="linear",
                   help="RoI classifier: linear (default) or cosine (normalised weights and features x temperature)")
    p.add_argument("--temperature", type=float, default=dm.COSINE_TEMPERATURE, help="cosine classifier temperature")
    p.add_argument("--rfs-threshold", type=float, default=0.0,
                   help="repeat-factor sampling threshold t (LVIS; 0 = off, uniform image sampling)")
    p.add_argument("--no-official-stats", action="store_true",
                   help="head logn: skip the official statistics pass (one epoch at lr 0, BN momentum 5e-5)")
    p.add_argument("--eval-only", metavar="MODEL_PT",
                   help="do not train: evaluate this exported model (built with --classifier/--tiny) into --out")
    p.add_argument("--name", help="manifest name (default demo_<head>)")
    p.add_argument("--tiny", action="store_true", help="tiny model and 30 iterations (tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, help="SGD iterations (default 1200, tiny 30)")
    p.add_argument("--batch", type=int, help="images per iteration (default 4, tiny 4)")
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, help="linear warm-up iterations (default 100, tiny 5)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval", action="store_true", help="evaluate the exported model on val (uncalibrated)")
    p.add_argument("--preview", action="store_true",
                   help="with --eval: also post-hoc LogN / LogA / plain-BN from training-split RoI statistics")
    p.add_argument("--evaluator", help="logn_eval_main binary (default: the Python reference evaluator)")
    p.add_argument("--settings", default="none,loga,bn,logn,mu,beta",
                   help="with --preview: the calibration settings to evaluate (comma-separated)")
    args = p.parse_args()
    if args.iters is None:
        args.iters = 30 if args.tiny else 1200
    if args.batch is None:
        args.batch = 4
    if args.warmup is None:
        args.warmup = 5 if args.tiny else 100
    name = args.name or f"demo_{args.head}"

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    log_file = open(os.path.join(args.out, "eval_log.txt" if args.eval_only else "train_log.txt"), "w")

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_file.write(msg + "\n")
        log_file.flush()

    log("command: " + " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]))
    t0 = time.time()
    train_split = dt.Split(args.data, "train")
    log(f"loaded {len(train_split)} training images in {time.time() - t0:.1f}s")
    net = dm.build(len(train_split.categories), args.tiny, args.classifier, args.temperature)
    official_pt = os.path.join(args.out, "official_stats.pth")
    if args.eval_only:
        net.load_state_dict(torch.jit.load(args.eval_only).state_dict())
        net.eval()
        pt_path = args.eval_only
        size = os.path.getsize(pt_path)
        metrics = {"name": name, "head": args.head, "classifier": args.classifier, "model": pt_path,
                   "model_bytes": size}
        if not os.path.exists(official_pt):
            official_pt = os.path.join(os.path.dirname(os.path.abspath(pt_path)), "official_stats.pth")
        args.eval = True
    else:
        log(f"parameters: {sum(p.numel() for p in net.parameters())}")
        trainers = []
        stats = dt.train(net, train_split, args.head, args, log, trainers)
        log(f"trained in {stats['train_seconds']:.0f}s")
        metrics = export_model(net, train_split, name, args, log, stats)
        if metrics is None:
            return 1
        pt_path = os.path.join(args.out, "model.pt")
        bn = trainers[0].logit_bn
        if bn is not None:
            metrics["trained_bn"] = {"background_mean": float(bn.running_mean[0]),
                                     "background_var": float(bn.running_var[0]),
                                     "batches": int(bn.num_batches_tracked)}
            # The trained running statistics (momentum 0.1, before the statistics pass), in the same
            # checkpoint layout: the EMA start for `logn calibrate --ema 5e-5 --ema-init`.
            dt.save_official_stats(bn, os.path.join(args.out, "trained_bn_stats.pth"), {
                "description": f"trained running statistics of {name}'s BatchNorm1d(C+1, affine=False) on the "
                               f"logits (momentum {bn.momentum}), before the statistics pass; background LAST",
                "model_sha256": sha256_of(pt_path), "seed": args.seed})
            if not args.no_official_stats:
                t1 = time.time()
                official = dt.official_statistics_pass(net, bn, train_split, args, log)
                metrics["official_stats_seconds"] = time.time() - t1
                dt.save_official_stats(official, official_pt, {
                    "description": f"official LogN statistics pass of {name}: one epoch over the training split at "
                                   f"lr 0, BatchNorm1d(C+1, affine=False) momentum {dt.OFFICIAL_STATS_MOMENTUM} "
                                   f"from the trained running statistics; background LAST",
                    "model_sha256": sha256_of(pt_path), "seed": args.seed})
                log(f"wrote {official_pt} (background last, mmdetection key names)")
    if args.eval:
        val = dt.Split(args.data, "val")
        scripted = torch.jit.load(pt_path)
        scripted.eval()
        t1 = time.time()
        outs = dt.run_model(scripted, val)
        metrics["val_forward_seconds"] = time.time() - t1
        settings = {"none": lambda x: x}
        if args.preview:
            t1 = time.time()
            mean, var, count = dt.roi_statistics(net, train_split, args.seed, log)
            log(f"training-style RoI statistics: {count} RoIs, {time.time() - t1:.0f}s")
            all_settings, beta = dt.calibrators(mean, var, [c["instance_count"] for c in train_split.categories])
            wanted = [k for k in args.settings.split(",") if k]
            settings = {k: all_settings[k] for k in wanted if k in all_settings}
            fg = var[1:]
            metrics["preview_stats"] = {"rois": count, "beta": beta, "background_mean": float(mean[0]),
                                        "background_var": float(var[0]),
                                        "fg_mean_range": [float(mean[1:].min()), float(mean[1:].max())],
                                        "fg_var_range": [float(fg.min()), float(fg.max())]}
            freq = [c.get("frequency") for c in train_split.categories]
            for g in "rcf":
                cols = [i + 1 for i, f in enumerate(freq) if f == g]
                if cols:
                    metrics["preview_stats"][f"mean_{g}"] = float(mean[cols].mean())
                    metrics["preview_stats"][f"var_{g}"] = float(var[cols].mean())
            with open(os.path.join(args.out, "train_roi_stats.json"), "w") as f:
                json.dump({"rois": count, "mean": mean.tolist(), "var": var.tolist()}, f)
            if os.path.exists(official_pt) and "logn" in wanted:
                om, ov = dt.load_official_stats(official_pt)
                official_settings, obeta = dt.calibrators(om, ov, [c["instance_count"] for c in train_split.categories])
                settings["logn_official"] = official_settings["logn"]
                metrics["official_stats"] = {"beta": obeta, "background_mean": float(om[0]),
                                             "background_var": float(ov[0])}
        gt = os.path.join(args.data, "val.json")
        metrics["val"] = {}
        for key, fn in settings.items():
            path = os.path.join(args.out, f"val_results_{key}.json")
            n = dt.write_results(val, outs, fn, path)
            m = dt.evaluate(gt, path, args.evaluator)
            keep = {k: m[k] for k in ["AP", "AP50", "AP75", "APr", "APc", "APf"] if k in m}
            metrics["val"][key] = keep
            log(f"val {key:13s}: " + " ".join(f"{k} {v * 100:.1f}" for k, v in keep.items()) + f" ({n} detections)")
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
