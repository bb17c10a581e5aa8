#!/usr/bin/python3
"""Converts an official LogN (mmdetection) checkpoint into LogN Serve statistics JSON.

The official code keeps the logit statistics as a BatchNorm1d(C+1, affine=False) on the RoI
head's classification logits, background LAST:

  roi_head.bbox_head.bn.running_mean / running_var            (Mask R-CNN and friends)
  roi_head.bbox_head.{0,1,2}.bn.running_mean / running_var    (Cascade: one per stage)

The checkpoint is a state_dict or {'state_dict': ...} (mmcv's save_checkpoint); a leading
'module.' (DataParallel) is ignored. Each statistics file is the proto3 JSON of
logn.v1.Statistics (docs/statistics-format.md), exactly what StatisticsFromJson reads:
BACKGROUND_POSITION_LAST, ACCUMULATION_METHOD_EMA with the BN momentum. For a Cascade
checkpoint one file is written per stage: OUT gets '.stage<N>' before its extension, or
'{stage}' in OUT is replaced by the stage number. Import a file with
`logn_stats import --store URL --model NAME --sha256 HEX --file OUT.json`.

Usage:
  import_mmdet_logn.py CHECKPOINT.pth -o OUT.json --model-name NAME
      [--model-file MODEL.pt | --model-sha256 HEX] [--momentum 0.1] [--rows N]
      [--stage N] [--background last|first] [--description TEXT] [--allow-pickle]

Exit status: 0 on success, 1 on bad input (the message says what is wrong), 2 on bad usage.
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import re
import sys

SINGLE_PREFIX = "roi_head.bbox_head.bn."
CASCADE_RE = re.compile(r"^roi_head\.bbox_head\.(\d+)\.bn\.running_mean$")


class ConversionError(Exception):
    """Bad input: reported on stderr with exit status 1."""


def load_state_dict(path, allow_pickle):
    import torch  # imported late so --help works without torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except TypeError:  # torch < 1.13 has no weights_only
        checkpoint = torch.load(path, map_location="cpu")
    except FileNotFoundError:
        raise ConversionError(f"checkpoint {path} does not exist")
    except Exception as e:  # noqa: BLE001 - any unpickling failure is bad input
        hint = "" if allow_pickle else (
            " (if the checkpoint holds non-tensor objects and you trust it, pass --allow-pickle)")
        raise ConversionError(f"cannot load checkpoint {path}: {e}{hint}")
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint and isinstance(
            checkpoint["state_dict"], dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise ConversionError(
            f"checkpoint {path} is a {type(checkpoint).__name__}, not a state_dict or "
            "{'state_dict': ...}")
    state = {}
    for key, value in checkpoint.items():
        if isinstance(key, str) and key.startswith("module."):
            key = key[len("module."):]
        state[key] = value
    return state


def find_stages(state):
    """Returns [(stage or None, key prefix)] for every BN on the RoI head's logits."""
    if SINGLE_PREFIX + "running_mean" in state:
        return [(None, SINGLE_PREFIX)]
    stages = sorted(int(m.group(1)) for m in map(CASCADE_RE.match, state) if m)
    if stages:
        return [(s, f"roi_head.bbox_head.{s}.bn.") for s in stages]
    near = sorted(k for k in state if "running_mean" in k)[:8]
    raise ConversionError(
        "no LogN statistics in the checkpoint: expected roi_head.bbox_head.bn.running_mean or "
        "roi_head.bbox_head.<stage>.bn.running_mean" +
        (f"; running_mean keys present: {', '.join(near)}" if near else ""))


def to_floats(tensor, name):
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise ConversionError(f"{name} is a {type(tensor).__name__}, not a tensor")
    if tensor.dim() != 1:
        raise ConversionError(f"{name} has shape {tuple(tensor.shape)}; expected one dimension")
    values = [float(v) for v in tensor.detach().to(torch.float64).tolist()]
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise ConversionError(f"{name}[{i}] is {v}")
    return values


def convert_stage(state, prefix, args, model_sha256, description):
    mean_key, var_key = prefix + "running_mean", prefix + "running_var"
    if var_key not in state:
        raise ConversionError(f"{mean_key} is present but {var_key} is missing")
    mean = to_floats(state[mean_key], mean_key)
    variance = to_floats(state[var_key], var_key)
    if len(mean) != len(variance):
        raise ConversionError(
            f"{mean_key} has {len(mean)} entries but {var_key} has {len(variance)}")
    if len(mean) < 2:
        raise ConversionError(
            f"{mean_key} has {len(mean)} entries; expected C+1 >= 2 (C classes, background last)")
    for i, v in enumerate(variance):
        if v < 0:
            raise ConversionError(f"{var_key}[{i}] is negative ({v})")
    batches = 0
    tracked = state.get(prefix + "num_batches_tracked")
    if tracked is not None:
        batches = int(tracked.item()) if hasattr(tracked, "item") else int(tracked)
    provenance = {
        "model_name": args.model_name,
        "created_at": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "description": description,
        "images_seen": "0",
        "batches_seen": str(batches),
    }
    if model_sha256:
        provenance["model_sha256"] = model_sha256
    position = "BACKGROUND_POSITION_LAST"
    if args.background == "first":
        # The served model puts the background logit first (torchvision's order): move the
        # checkpoint's last column to the front; the foreground order is unchanged.
        mean, variance = mean[-1:] + mean[:-1], variance[-1:] + variance[:-1]
        position = "BACKGROUND_POSITION_FIRST"
    return {
        "layout": {"num_classes": len(mean) - 1, "background": position},
        "count": str(args.rows),
        "mean": mean,
        "variance": variance,
        "method": "ACCUMULATION_METHOD_EMA",
        "momentum": args.momentum,
        "provenance": provenance,
    }


def output_path(template, stage):
    if stage is None:
        return template.replace("{stage}", "0") if "{stage}" in template else template
    if "{stage}" in template:
        return template.replace("{stage}", str(stage))
    root, ext = os.path.splitext(template)
    return f"{root}.stage{stage}{ext or '.json'}"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv):
    parser = argparse.ArgumentParser(
        description="Convert an official LogN mmdetection checkpoint into statistics JSON.")
    parser.add_argument("checkpoint", help="mmdetection .pth checkpoint")
    parser.add_argument("-o", "--output", required=True,
                        help="output JSON ('{stage}' or '.stage<N>' for Cascade stages)")
    parser.add_argument("--model-name", required=True, help="name of the served model")
    sha = parser.add_mutually_exclusive_group()
    sha.add_argument("--model-sha256", help="sha256 of the served TorchScript file")
    sha.add_argument("--model-file", help="the served TorchScript file (its sha256 is recorded)")
    parser.add_argument("--momentum", type=float, default=0.1,
                        help="the BatchNorm momentum the statistics were accumulated with")
    parser.add_argument("--rows", type=int, default=0,
                        help="rows the statistics were accumulated over, if known")
    parser.add_argument("--stage", type=int, help="convert only this Cascade stage")
    parser.add_argument("--background", choices=("last", "first"), default="last",
                        help="where the SERVED model's background logit is (the checkpoint's is "
                             "always last); first moves it to column 0")
    parser.add_argument("--description", help="provenance description")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="load a checkpoint with arbitrary pickled objects (trusted files only)")
    args = parser.parse_args(argv)

    try:
        if not (0 < args.momentum <= 1):
            raise ConversionError(f"--momentum must be in (0, 1], got {args.momentum}")
        if args.rows < 0:
            raise ConversionError(f"--rows must be >= 0, got {args.rows}")
        model_sha256 = args.model_sha256
        if args.model_file:
            if not os.path.isfile(args.model_file):
                raise ConversionError(f"model file {args.model_file} does not exist")
            model_sha256 = sha256_of(args.model_file)
        if model_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", model_sha256):
            raise ConversionError(
                f"--model-sha256 must be 64 lowercase hex digits, got '{model_sha256}'")

        state = load_state_dict(args.checkpoint, args.allow_pickle)
        stages = find_stages(state)
        if args.stage is not None:
            stages = [(s, p) for s, p in stages if s == args.stage]
            if not stages:
                raise ConversionError(f"the checkpoint has no Cascade stage {args.stage}")
        base = os.path.basename(args.checkpoint)
        for stage, prefix in stages:
            description = args.description or (
                f"imported from {base}" + ("" if stage is None else f", cascade stage {stage}"))
            stats = convert_stage(state, prefix, args, model_sha256, description)
            path = output_path(args.output, stage if len(stages) > 1 or args.stage is not None
                               else None)
            with open(path, "w") as f:
                json.dump(stats, f, indent=2, allow_nan=False)
                f.write("\n")
            print(f"{path}: {stats['layout']['num_classes']} classes, background last"
                  + ("" if stage is None else f" (stage {stage})"))
    except ConversionError as e:
        print(f"import_mmdet_logn: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
