#!/usr/bin/python3
"""Trains a demo detector of the LogN paper's family on the long-tail benchmark and exports it.

A small two-stage detector (conv backbone + light FPN, RPN, grid_sample RoIAlign, RoI head with a
C+1 linear softmax classifier and class-agnostic box regression), trained from scratch with random
RoI sampling (512 RoIs per image, <= 25 % positives at IoU >= 0.5, proposals + ground truth), no
re-weighting or re-sampling. Two heads, differing only in the RoI classifier's training loss:

  --head ce    cross-entropy on the raw logits (the paper's Algorithm 1 calibrates such a model)
  --head logn  BatchNorm1d(C+1, affine=False) on the logits before the cross-entropy, as the
               official LogN code trains; the exported model outputs the RAW logits

Writes to --out: model.pt (TorchScript, the model contract of docs/model-contract.md, aten ops
only) and model.json (the manifest), train_log.txt, metrics.json and, with --eval, the val
results and metrics (uncalibrated, and with --preview the post-hoc LogN / LogA / BN preview).
Deterministic given --seed and --threads.

Examples:
  /usr/bin/python3 tools/longtail_data/generate.py --out /tmp/lt_full --seed 0 --scale full
  /usr/bin/python3 tools/train_demo_detector.py --data /tmp/lt_full --head ce --out models/demo_ce \
      --eval --preview --evaluator build/client/eval/logn_eval_main
  # The test suite's smoke run (tiny data, tiny model, a few iterations):
  /usr/bin/python3 tools/train_demo_detector.py --data /tmp/lt_tiny --head logn --tiny --out /tmp/m
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_detector import model as dm  # noqa: E402
from demo_detector import train as dt  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="tools/longtail_data output (train.json, val.json, images)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--head", choices=["ce", "logn"], required=True)
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
    log_file = open(os.path.join(args.out, "train_log.txt"), "w")

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_file.write(msg + "\n")
        log_file.flush()

    log("command: " + " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]))
    t0 = time.time()
    train_split = dt.Split(args.data, "train")
    log(f"loaded {len(train_split)} training images in {time.time() - t0:.1f}s")
    net = dm.build(len(train_split.categories), args.tiny)
    log(f"parameters: {sum(p.numel() for p in net.parameters())}")
    stats = dt.train(net, train_split, args.head, args, log)
    log(f"trained in {stats['train_seconds']:.0f}s")

    head_text = ("cross-entropy on the raw logits" if args.head == "ce" else
                 "BatchNorm1d(C+1, affine=False) on the logits before the cross-entropy (training only)")
    description = (
        f"LogN Serve demo detector ({'tiny' if args.tiny else 'full'}): conv backbone + FPN, RPN, "
        f"grid_sample RoIAlign, RoI head with a C+1 linear classifier, class-agnostic boxes; trained from "
        f"scratch on tools/longtail_data ({len(train_split)} images) for {args.iters} iterations x {args.batch} "
        f"images, seed {args.seed}, 512 random RoIs/image (25% positives), classifier loss: {head_text}. "
        f"Outputs raw logits. tools/train_demo_detector.py")
    manifest = dt.manifest_for(name, description, train_split.categories, train_split.image_size())
    pt_path = os.path.join(args.out, "model.pt")
    dt.export(net, pt_path, manifest)
    problems = dt.check_contract(pt_path)
    if problems:
        log("CONTRACT VIOLATIONS: " + "; ".join(problems))
        return 1
    size = os.path.getsize(pt_path)
    log(f"exported {pt_path} ({size / 1e6:.2f} MB); contract checks passed")
    metrics = {"name": name, "head": args.head, "seed": args.seed, "iters": args.iters, "batch": args.batch,
               "threads": args.threads, "model_bytes": size, **stats}

    if args.eval:
        val = dt.Split(args.data, "val")
        scripted = torch.jit.load(pt_path)
        scripted.eval()
        t1 = time.time()
        outs = dt.run_model(scripted, val)
        metrics["val_forward_seconds"] = time.time() - t1
        settings = {"none": lambda x: x}
        if args.preview:
            mean, var, count = dt.roi_statistics(net, train_split, args.seed, log)
            settings, beta = dt.calibrators(mean, var, [c["instance_count"] for c in train_split.categories])
            metrics["preview_stats"] = {"rois": count, "beta": beta, "background_mean": float(mean[0]),
                                        "background_var": float(var[0])}
            with open(os.path.join(args.out, "train_roi_stats.json"), "w") as f:
                json.dump({"rois": count, "mean": mean.tolist(), "var": var.tolist()}, f)
        gt = os.path.join(args.data, "val.json")
        metrics["val"] = {}
        for key, fn in settings.items():
            path = os.path.join(args.out, f"val_results_{key}.json")
            n = dt.write_results(val, outs, fn, path)
            m = dt.evaluate(gt, path, args.evaluator)
            keep = {k: m[k] for k in ["AP", "AP50", "AP75", "APr", "APc", "APf"] if k in m}
            metrics["val"][key] = keep
            log(f"val {key:5s}: " + " ".join(f"{k} {v * 100:.1f}" for k, v in keep.items()) + f" ({n} detections)")
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
