#!/usr/bin/python3
"""Re-exports a trained demo detector with the current tools/demo_detector/model.py, weights unchanged.

Loads <dir>/model.pt (TorchScript), copies its parameters and buffers into a fresh DemoDetector of
the same configuration (model.build: full or tiny, from the parameter shapes; classes from
<dir>/model.json), scripts it with the current code (e.g. the proposals() method added after the
shipped models were trained) and, once the checks pass, replaces <dir>/model.pt and updates
<dir>/model.json (hasProposals, proposalSettings). No retraining.

Checks (all must pass, else nothing is written):
  * every parameter and buffer bitwise equal, every configuration attribute equal;
  * forward (boxes, logits) and classify_rois (on forward's boxes) of the old and new files
    bitwise equal on a batch of images (structured test images at three sizes, resized per the
    manifest as the runtime does; with --data, also the first val images of a tools/longtail_data
    dataset);
  * proposals() equals train.fast_proposals (the training-time proposals) on the same images;
  * train.check_contract (the runtime's load checks) on the new files.
The script runs itself with PYTHONHASHSEED=0, so the written bytes (the sha256) are reproducible.

Usage: /usr/bin/python3 tools/demo_detector/reexport.py models/demo_ce models/demo_logn [--data DIR]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import List

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from demo_detector import model as dm  # noqa: E402
from demo_detector import train as dt  # noqa: E402
import export_torchvision  # noqa: E402

# Configuration attributes the scripted module carries besides its tensors.
ATTRIBUTES = ["num_classes", "rpn_stride", "roi_stride", "pool", "sampling", "size_divisible", "rpn_weights",
              "roi_weights", "pre_nms_top_n", "post_nms_top_n", "rpn_nms_thresh", "min_size"]


def rebuild(old: torch.jit.ScriptModule, num_classes: int) -> dm.DemoDetector:
    state = old.state_dict()
    # A cosine classifier has no cls_score.bias (and the scripted module records its temperature).
    classifier = "linear" if "cls_score.bias" in state else "cosine"
    temperature = float(getattr(old, "temperature", dm.COSINE_TEMPERATURE))
    for tiny in (False, True):
        net = dm.build(num_classes, tiny, classifier, temperature)
        fresh = net.state_dict()
        if set(fresh) == set(state) and all(fresh[k].shape == state[k].shape for k in fresh):
            net.load_state_dict(state, strict=True)
            net.eval()
            for k in ATTRIBUTES:
                if getattr(net, k) != getattr(old, k):
                    raise SystemExit(f"attribute {k}: old {getattr(old, k)}, rebuilt {getattr(net, k)}")
            return net
    raise SystemExit("the old model's parameters match neither build(tiny=False) nor build(tiny=True)")


def check_images(manifest: dict, data: str, count: int) -> List[torch.Tensor]:
    policy = manifest["input"]
    s = policy["shorterSide"]["shorterSide"]
    images = [export_torchvision.reference_image(h, w, seed)
              for seed, (h, w) in enumerate([(s, s), (s, s * 4 // 3), (s * 3 // 4, s)])]
    if data:
        split = dt.Split(data, "val")
        images += [split.pixels[i].permute(1, 2, 0).contiguous() for i in range(min(count, len(split)))]
    return [export_torchvision.preprocess(img, policy)[0] for img in images]


def compare(old, new, net: dm.DemoDetector, xs: List[torch.Tensor]) -> dict:
    """Old vs new file outputs (max abs differences; all must be 0) and proposals vs fast_proposals."""
    worst = {"forward_boxes": 0.0, "forward_logits": 0.0, "classify_rois": 0.0, "proposals_vs_training": 0.0}
    counts = {"candidates": 0, "proposals": 0}
    with torch.inference_mode():
        a = old(xs)
        b = new(xs)
        for (ba, la), (bb, lb) in zip(a, b):
            if ba.shape != bb.shape or la.shape != lb.shape:
                raise SystemExit(f"forward shapes differ: {ba.shape} {la.shape} vs {bb.shape} {lb.shape}")
            worst["forward_boxes"] = max(worst["forward_boxes"], float((ba - bb).abs().max()))
            worst["forward_logits"] = max(worst["forward_logits"], float((la - lb).abs().max()))
            counts["candidates"] += int(la.shape[0])
        rois = [boxes for boxes, _ in a]
        for ra, rb in zip(old.classify_rois(xs, rois), new.classify_rois(xs, rois)):
            worst["classify_rois"] = max(worst["classify_rois"], float((ra - rb).abs().max()))
        # One image at a time (training's images share one size, a multiple of 16: no padding).
        for x in xs:
            got = new.proposals([x])[0]
            batched, sizes = net.batch_images([x])
            p3, _ = net.features(batched)
            obj, reg = net.rpn_outputs(p3)
            anchors = net.anchors(int(p3.shape[2]), int(p3.shape[3]), x.device)
            want = dt.fast_proposals(net, obj[0], reg[0], anchors, sizes[0])
            if got.shape != want.shape:
                raise SystemExit(f"proposals {list(got.shape)} vs training-time {list(want.shape)}")
            worst["proposals_vs_training"] = max(worst["proposals_vs_training"], float((got - want).abs().max()))
            counts["proposals"] += int(got.shape[0])
    return {"max_abs_diff": worst, **counts, "images": len(xs)}


def reexport(model_dir: str, data: str, count: int) -> dict:
    pt = os.path.join(model_dir, "model.pt")
    js = os.path.join(model_dir, "model.json")
    with open(js) as f:
        manifest = json.load(f)
    old = torch.jit.load(pt)
    old.eval()
    net = rebuild(old, len(manifest["classes"]))
    old_state = old.state_dict()
    for k, v in net.state_dict().items():
        if not torch.equal(v, old_state[k]):
            raise SystemExit(f"{k} differs after load_state_dict")
    manifest["hasProposals"] = True
    manifest["proposalSettings"] = dt.proposal_settings(net)
    tmp = tempfile.mkdtemp(prefix="demo_reexport_")
    try:
        new_pt = os.path.join(tmp, "model.pt")
        dt.export(net, new_pt, manifest)
        new = torch.jit.load(new_pt)
        new.eval()
        result = compare(old, new, net, check_images(manifest, data, count))
        if any(v != 0.0 for v in result["max_abs_diff"].values()):
            raise SystemExit(f"{model_dir}: outputs differ: {result}")
        problems = dt.check_contract(new_pt)
        if problems:
            raise SystemExit(f"{model_dir}: contract problems: {problems}")
        shutil.copyfile(new_pt, pt)
        shutil.copyfile(os.path.join(tmp, "model.json"), js)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["bytes"] = os.path.getsize(pt)
    return result


def main() -> int:
    if os.environ.get("PYTHONHASHSEED") != "0":
        # TorchScript writes some module constants in set order: a fixed hash seed makes the saved
        # bytes, hence the model's sha256 (its statistics-store key), reproducible.
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dirs", nargs="+", help="directories holding model.pt and model.json")
    p.add_argument("--data", help="a tools/longtail_data dataset whose val images join the check")
    p.add_argument("--count", type=int, default=4, help="val images from --data")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for d in args.model_dirs:
        print(d, json.dumps(reexport(d, args.data, args.count)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
