#!/usr/bin/python3
"""The service's statistics from proposals equal an independent re-implementation of training's
RoI sampling (issue 14).

Runs the real server on a demo detector that exports `proposals`, calibrates a small training
set through `logn calibrate` (plain, then with repeat-factor weights), and recomputes the same
statistics here from the model's own methods with this file's sampler: the RPN's proposals plus
the ground truth, IoU >= 0.5 positive, 512 RoIs of which at most 25 % positive, each image's
subset chosen by the documented portable rule (server/core/roi_sampler.h: FNV-1a seed of the
image bytes, the smallest SplitMix64 keys). Counts must be equal and the statistics equal to
float tolerance. The server runs the model unoptimised (--optimize_for_inference=false), so that
both sides run the same TorchScript graph: the test checks the sampler, not oneDNN's rounding.

    proposals_statistics_test.py --server-binary B --logn L --model M --work-dir W
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "client", "testing"))
sys.path.insert(0, os.path.join(REPO, "tools"))
from logn_test_server import LognServer  # noqa: E402
import export_torchvision  # noqa: E402  (the runtime's preprocessing, in Python)

BASE_SEED = 20220601  # the server's default --sampling_seed
NUM_ROIS = 512
POSITIVE_FRACTION = 0.25
POSITIVE_IOU = np.float32(0.5)
RFS_THRESHOLD = 0.1
TOLERANCE = 1e-5
MASK = (1 << 64) - 1


def fnv1a_seed(base_seed: int, data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in base_seed.to_bytes(8, "little") + data:
        h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


def splitmix64(seed: int, i: int) -> int:
    z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def best_iou(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per box, the best IoU with a ground-truth box, in float32 like the sampler."""
    best = np.zeros(len(boxes), dtype=np.float32)
    for g in gt:
        iw = np.minimum(boxes[:, 2], g[2]) - np.maximum(boxes[:, 0], g[0])
        ih = np.minimum(boxes[:, 3], g[3]) - np.maximum(boxes[:, 1], g[1])
        inter = iw * ih
        area_a = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        area_b = (g[2] - g[0]) * (g[3] - g[1])
        union = area_a + area_b - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where((iw > 0) & (ih > 0) & (union > 0), inter / union, np.float32(0))
        best = np.maximum(best, iou.astype(np.float32))
    return best


def sample(proposals: np.ndarray, gt: np.ndarray, seed: int):
    """Training's sampler with the portable keys: (RoIs [R, 4], number of positives)."""
    boxes = np.concatenate([proposals, gt]).astype(np.float32)
    positive = best_iou(boxes, gt) >= POSITIVE_IOU if len(gt) else np.zeros(len(boxes), bool)

    def smallest(indices, count):
        return sorted(indices, key=lambda i: (splitmix64(seed, i), i))[:count]

    pos = smallest([i for i in range(len(boxes)) if positive[i]], int(NUM_ROIS * POSITIVE_FRACTION))
    neg = smallest([i for i in range(len(boxes)) if not positive[i]], NUM_ROIS - len(pos))
    return boxes[pos + neg], len(pos)


def repeat_factors(dataset: dict, t: float) -> dict:
    """LVIS repeat-factor sampling: r(I) = max_c max(1, sqrt(t / f_c))."""
    cats = {im["id"]: set() for im in dataset["images"]}
    for a in dataset["annotations"]:
        cats[a["image_id"]].add(a["category_id"])
    images_with = {}
    for cs in cats.values():
        for c in cs:
            images_with[c] = images_with.get(c, 0) + 1
    n = len(dataset["images"])
    return {i: max([1.0] + [math.sqrt(t / (images_with[c] / n)) for c in cs]) for i, cs in cats.items()}


def reference(model, manifest: dict, dataset: dict, images_dir: str, weights=None):
    """Statistics of every image's sampled RoIs: (count, total weight, mean, variance, rois,
    positives)."""
    from torchvision.io import ImageReadMode, decode_image
    gt_of = {im["id"]: [] for im in dataset["images"]}
    for a in sorted(dataset["annotations"], key=lambda a: a["id"]):
        x, y, w, h = a["bbox"]
        gt_of[a["image_id"]].append([x, y, x + w, y + h])
    rows, row_weights, rois_total, positives_total = [], [], 0, 0
    for im in dataset["images"]:
        path = os.path.join(images_dir, im["file_name"])
        with open(path, "rb") as f:
            data = f.read()
        chw = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.RGB)
        x, (h, w) = export_torchvision.preprocess(chw.permute(1, 2, 0), manifest["input"])
        if (h, w) != (chw.shape[1], chw.shape[2]):
            raise AssertionError("the test needs images at the model's input size (no resize)")
        with torch.inference_mode():
            proposals = model.proposals([x])[0].numpy()
            gt = np.array(gt_of[im["id"]], dtype=np.float32).reshape(-1, 4)
            rois, positives = sample(proposals, gt, fnv1a_seed(BASE_SEED, data))
            logits = model.classify_rois([x], [torch.from_numpy(rois)])[0]
        rows.append(logits.to(torch.float64).numpy())
        row_weights.append(np.full(len(rois), 1.0 if weights is None else weights[im["id"]]))
        rois_total += len(rois)
        positives_total += positives
    x = np.concatenate(rows)
    w = np.concatenate(row_weights)
    mean = np.average(x, axis=0, weights=w)
    variance = (w[:, None] * (x - mean) ** 2).sum(0) / (w.sum() - 1)
    return len(x), w.sum(), mean, variance, rois_total, positives_total


def relative_difference(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))))


def check(what: str, served: dict, want) -> None:
    count, total_weight, mean, variance, rois, positives = want
    stats = served["statistics"]
    sampling = served["sampling"]
    print(f"{what}: service {stats['count']} rows, {sampling.get('positive_rois')} positives; "
          f"reference {count} rows, {positives} positives")
    assert int(stats["count"]) == count, (stats["count"], count)
    assert int(sampling["rois"]) == rois and int(sampling["positive_rois"]) == positives
    assert sampling["roi_source"] == "ROI_SOURCE_PROPOSALS", sampling
    got_weight = float(stats.get("total_weight", 0)) or float(stats["count"])
    assert abs(got_weight - total_weight) <= 1e-9 * total_weight, (got_weight, total_weight)
    for field, value in (("mean", mean), ("variance", variance)):
        diff = relative_difference(stats[field], value)
        print(f"  {field}: max difference {diff:.3g} (relative to 1 + |value|)")
        assert diff <= TOLERANCE, f"{what}: {field} differs by {diff:.3g} > {TOLERANCE}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server-binary", required=True)
    parser.add_argument("--logn", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--work-dir", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.work_dir, exist_ok=True)
    data = os.path.join(args.work_dir, "data")
    with open(os.path.splitext(args.model)[0] + ".json") as f:
        manifest = json.load(f)
    size = manifest["input"]["shorterSide"]["shorterSide"]
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "longtail_data", "generate.py"),
                    "--out", data, "--seed", "11", "--scale", "tiny", "--image-size", str(size)],
                   check=True, capture_output=True)
    with open(os.path.join(data, "train.json")) as f:
        dataset = json.load(f)
    images = os.path.join(data, "train")
    model = torch.jit.load(args.model).eval()

    def logn(*cli_args) -> dict:
        p = subprocess.run([args.logn, *cli_args, "--server", server.address, "--json"],
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise AssertionError(f"logn {' '.join(cli_args)}: {p.stderr}")
        return json.loads(p.stdout)

    with LognServer(args.server_binary, args.model, os.path.join(args.work_dir, "server"),
                    extra_args=["--optimize_for_inference=false"]) as server:
        for what, extra, weights in (
                ("unweighted", [], None),
                (f"repeat factors t={RFS_THRESHOLD}", ["--rfs-threshold", str(RFS_THRESHOLD)],
                 repeat_factors(dataset, RFS_THRESHOLD))):
            committed = logn("calibrate", "--dataset", os.path.join(data, "train.json"),
                             "--images", images, "--batch-images", "4", *extra)
            version = committed["statistics_version"]["version"]
            served = logn("stats", "show", str(version), "--statistics")["statistics_version"]
            if weights is not None:
                assert served["sampling"]["rfs_threshold"] == RFS_THRESHOLD, served["sampling"]
            check(what, served, reference(model, manifest, dataset, images, weights))
    print("OK: the service's statistics from proposals equal the re-implementation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
