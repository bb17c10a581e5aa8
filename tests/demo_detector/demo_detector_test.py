#!/usr/bin/python3
"""Tests of tools/train_demo_detector.py: a tiny model trained for a few iterations on the tiny
long-tail dataset must export to the model contract (docs/model-contract.md) with aten ops only,
deterministically; and the pieces the exported model relies on (aten NMS, grid_sample RoIAlign,
RoI sampling) must agree with their torchvision references.

Usage: demo_detector_test.py [--work DIR]   (ctest: demo_detector_test)
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))
from demo_detector import model as dm  # noqa: E402
from demo_detector import train as dt  # noqa: E402
import export_torchvision  # noqa: E402

PY = "/usr/bin/python3"
WORK = None  # set in main()


def run(*args):
    r = subprocess.run([PY] + list(args), capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"{args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def trained(head: str, tag: str) -> str:
    """Trains (once per tag) a tiny model for 20 iterations; returns its directory. The CE model is
    also evaluated on val (the evaluation path of the CLI)."""
    out = os.path.join(WORK, tag)
    if not os.path.exists(os.path.join(out, "metrics.json")):
        run(os.path.join(REPO, "tools", "train_demo_detector.py"), "--data", os.path.join(WORK, "data"),
            "--head", head, "--tiny", "--iters", "20", "--threads", "1", "--seed", "3", "--out", out,
            *(["--eval"] if head == "ce" else []))
    return out


class ExportTest(unittest.TestCase):
    def test_both_heads_export_to_the_contract(self):
        with open(os.path.join(WORK, "data", "train.json")) as f:
            cats = sorted(json.load(f)["categories"], key=lambda c: c["id"])
        state_keys = {}
        for head in ["ce", "logn"]:
            out = trained(head, head)
            pt = os.path.join(out, "model.pt")
            self.assertEqual(dt.check_contract(pt), [])
            with open(os.path.join(out, "model.json")) as f:
                man = json.load(f)
            self.assertEqual(man["name"], f"demo_{head}")
            self.assertEqual(man["background"], "BACKGROUND_POSITION_FIRST")
            self.assertEqual(man["boxLayout"], "BOX_LAYOUT_CLASS_AGNOSTIC")
            self.assertTrue(man["hasClassifyRois"])
            self.assertTrue(man["hasProposals"])
            self.assertEqual(man["proposalSettings"], {"preNmsTopN": 1000, "postNmsTopN": 600, "nmsThreshold": 0.7})
            self.assertEqual(man["input"]["shorterSide"]["shorterSide"], 128)  # the tiny data's size
            self.assertEqual([c["id"] for c in man["classes"]], [c["id"] for c in cats])
            self.assertEqual([c["name"] for c in man["classes"]], [c["name"] for c in cats])
            self.assertEqual([c["imageCount"] for c in man["classes"]], [c["image_count"] for c in cats])
            self.assertEqual([c["instanceCount"] for c in man["classes"]], [c["instance_count"] for c in cats])
            freq = {"r": "FREQUENCY_GROUP_RARE", "c": "FREQUENCY_GROUP_COMMON", "f": "FREQUENCY_GROUP_FREQUENT"}
            self.assertEqual([c["frequency"] for c in man["classes"]], [freq[c["frequency"]] for c in cats])

            m = torch.jit.load(pt)
            m.eval()
            keys = set(m.state_dict().keys())
            state_keys[head] = keys
            # A batch of two images of different, non-square sizes (what the runtime sends).
            imgs = [export_torchvision.reference_image(128, 170, 1), export_torchvision.reference_image(97, 128, 2)]
            xs = [export_torchvision.preprocess(i, man["input"])[0] for i in imgs]
            with torch.inference_mode():
                outs = m(xs)
                self.assertEqual(len(outs), 2)
                for x, (boxes, logits) in zip(xs, outs):
                    n = logits.shape[0]
                    self.assertGreater(n, 0)
                    self.assertEqual(list(logits.shape), [n, len(cats) + 1])
                    self.assertEqual(list(boxes.shape), [n, 4])
                    self.assertTrue(bool(torch.isfinite(logits).all()))
                    h, w = x.shape[1], x.shape[2]
                    self.assertTrue(bool((boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all()))
                    self.assertTrue(bool((boxes[:, 1] >= 0).all() and (boxes[:, 3] <= h).all()))
                    self.assertTrue(bool((boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()))
                rois = [torch.tensor([[1.0, 2.0, 40.0, 50.0], [10.0, 10.0, 100.0, 90.0], [0.0, 0.0, 5.0, 5.0]]),
                        torch.zeros([0, 4])]
                r = m.classify_rois(xs, rois)
                self.assertEqual([list(t.shape) for t in r], [[3, len(cats) + 1], [0, len(cats) + 1]])
                # classify_rois is the RoI head forward() uses: same image alone, same RoIs.
                r1 = m.classify_rois(xs[:1], rois[:1])[0]
                self.assertTrue(torch.allclose(r[0], r1, atol=1e-4))
                # proposals: per image [P, 4] inside the image, at most the training post-NMS 600,
                # and more than forward's inference 300 allow (training keeps more).
                props = m.proposals(xs)
                self.assertEqual(len(props), 2)
                for x, p in zip(xs, props):
                    self.assertEqual(p.dim(), 2)
                    self.assertEqual(p.shape[1], 4)
                    self.assertGreater(p.shape[0], 0)
                    self.assertLessEqual(p.shape[0], 600)
                    h, w = x.shape[1], x.shape[2]
                    self.assertTrue(bool((p[:, 0] >= 0).all() and (p[:, 2] <= w).all()))
                    self.assertTrue(bool((p[:, 1] >= 0).all() and (p[:, 3] <= h).all()))
                    self.assertTrue(bool(((p[:, 2] - p[:, 0]) >= 1).all() and ((p[:, 3] - p[:, 1]) >= 1).all()))
            with open(os.path.join(out, "metrics.json")) as f:
                metrics = json.load(f)
            if head == "ce":
                # The evaluated val results are LVIS results for this dataset's images and classes.
                self.assertIn("none", metrics["val"])
                with open(os.path.join(out, "val_results_none.json")) as f:
                    res = json.load(f)
                self.assertGreater(len(res), 0)
                self.assertTrue({r["category_id"] for r in res} <= {c["id"] for c in cats})
                # It learned something: the CE loss starts at ln(13) = 2.56 (uniform over C+1).
                self.assertLess(metrics["final_cls"], 2.0)
        # The LogN head's BatchNorm is training-only: both exports have the same parameters.
        self.assertEqual(state_keys["ce"], state_keys["logn"])
        self.assertFalse(any("logit_bn" in k or "running_mean" in k and "cls" in k for k in state_keys["logn"]))

    def test_reexport_keeps_the_weights_and_adds_proposals(self):
        src = trained("ce", "ce")
        out = os.path.join(WORK, "reexported")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        shutil.copyfile(os.path.join(src, "model.pt"), os.path.join(out, "model.pt"))
        with open(os.path.join(src, "model.json")) as f:
            man = json.load(f)
        del man["hasProposals"], man["proposalSettings"]  # as the shipped models were before
        with open(os.path.join(out, "model.json"), "w") as f:
            json.dump(man, f)
        stdout = run(os.path.join(REPO, "tools", "demo_detector", "reexport.py"), out, "--data",
                     os.path.join(WORK, "data"), "--count", "2")
        result = json.loads(stdout.split(" ", 1)[1])
        self.assertEqual(result["images"], 5)
        self.assertGreater(result["proposals"], 0)
        self.assertEqual(result["max_abs_diff"], {"forward_boxes": 0.0, "forward_logits": 0.0,
                                                  "classify_rois": 0.0, "proposals_vs_training": 0.0})
        with open(os.path.join(out, "model.json")) as f:
            self.assertTrue(json.load(f)["hasProposals"])
        a = torch.jit.load(os.path.join(src, "model.pt")).state_dict()
        b = torch.jit.load(os.path.join(out, "model.pt")).state_dict()
        self.assertEqual(set(a), set(b))
        for k in a:
            self.assertTrue(torch.equal(a[k], b[k]), k)

    def test_training_is_deterministic(self):
        a = torch.jit.load(os.path.join(trained("logn", "logn"), "model.pt")).state_dict()
        b = torch.jit.load(os.path.join(trained("logn", "logn_again"), "model.pt")).state_dict()
        self.assertEqual(set(a), set(b))
        for k in a:
            self.assertTrue(torch.equal(a[k], b[k]), k)

    def test_heads_differ(self):
        a = torch.jit.load(os.path.join(trained("ce", "ce"), "model.pt")).state_dict()
        b = torch.jit.load(os.path.join(trained("logn", "logn"), "model.pt")).state_dict()
        self.assertFalse(torch.equal(a["cls_score.weight"], b["cls_score.weight"]))


class PiecesTest(unittest.TestCase):
    def test_aten_nms_matches_torchvision(self):
        from torchvision.ops import nms

        g = torch.Generator().manual_seed(0)
        for n in [0, 1, 7, 300]:
            xy = torch.rand(n, 2, generator=g) * 100
            boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 40 + 1], 1)
            scores = (torch.rand(n, generator=g) * 10).round() / 10  # many ties
            for t in [0.3, 0.5, 0.7]:
                self.assertTrue(torch.equal(dm.nms(boxes, scores, t), nms(boxes, scores, t)), (n, t))
        scripted = torch.jit.script(dm.nms)
        self.assertTrue(torch.equal(scripted(boxes, scores, 0.5), nms(boxes, scores, 0.5)))

    def test_grid_sample_roi_align_matches_torchvision(self):
        from torchvision.ops import roi_align

        g = torch.Generator().manual_seed(1)
        feat = torch.randn(5, 20, 24, generator=g)
        # Inside the map (torchvision clamps at the border where grid_sample pads with zeros).
        rois = torch.tensor([[8.0, 8.0, 60.0, 40.0], [20.5, 12.25, 30.0, 70.0], [4.0, 4.0, 90.0, 76.0]])
        for pool, sampling in [(7, 1), (7, 2), (5, 3)]:  # (7, 1): the committed models
            net = dm.DemoDetector(3, [4, 4, 4, 4], 4, 5, pool, sampling, 8, [16.0], [1.0])
            ours = net.roi_align(feat, rois)
            ref = roi_align(feat[None], [rois], output_size=pool, spatial_scale=0.25, sampling_ratio=sampling,
                            aligned=True)
            self.assertEqual(list(ours.shape), [3, 5, pool, pool])
            self.assertTrue(torch.allclose(ours, ref, atol=1e-5), (pool, sampling, float((ours - ref).abs().max())))
        # The committed configuration is (7, 1).
        full = dm.build(100, tiny=False)
        self.assertEqual((full.pool, full.sampling), (7, 1))

    def test_exported_proposals_are_the_training_proposals(self):
        torch.manual_seed(4)
        net = dm.build(12, tiny=True).eval()
        # Training and inference settings are separate attributes; proposals() uses training's.
        self.assertEqual((net.train_pre_nms_top_n, net.train_post_nms_top_n), (dt.TRAIN_PRE_NMS, dt.TRAIN_POST_NMS))
        self.assertEqual((net.pre_nms_top_n, net.post_nms_top_n), (600, 300))
        self.assertEqual(dt.proposal_settings(net), dt.proposal_settings())
        scripted = torch.jit.script(net)
        g = torch.Generator().manual_seed(5)
        x = torch.randn(3, 128, 128, generator=g)  # training's images: one size, a multiple of 16
        with torch.inference_mode():
            got = scripted.proposals([x])[0]
            p3, _ = net.features(x[None])
            obj, reg = net.rpn_outputs(p3)
            anchors = net.anchors(int(p3.shape[2]), int(p3.shape[3]), x.device)
            want = dt.fast_proposals(net, obj[0], reg[0], anchors, (128, 128))
            inference = net.image_proposals(obj[0], reg[0], anchors, (128, 128), 600, 300)
        self.assertGreater(want.shape[0], 300)  # the training settings keep more than inference's 300
        self.assertEqual(inference.shape[0], 300)
        self.assertTrue(torch.equal(got, want))

    def test_roi_sampling(self):
        g = torch.Generator().manual_seed(2)
        gt = torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 120.0, 100.0]])
        gl = torch.tensor([3, 7])
        xy = torch.rand(2000, 2, generator=g) * 120
        props = torch.cat([xy, xy + torch.rand(2000, 2, generator=g) * 60 + 2], 1)
        props[:300] = gt.repeat(150, 1) + torch.randn(300, 4, generator=g) * 2  # many positives
        rois, labels, matched = dt.sample_rois(props, gt, gl, g)
        self.assertEqual(rois.shape[0], 512)
        self.assertEqual(int((labels > 0).sum()), 128)  # 25 %, capped
        iou = dm.box_iou(rois, gt).max(1)[0]
        self.assertTrue(bool((iou[labels > 0] >= 0.5).all()))
        self.assertTrue(bool((iou[labels == 0] < 0.5).all()))
        # Few proposals: every positive is taken, ground truth counts as a proposal.
        rois, labels, _ = dt.sample_rois(props[1000:1010], gt, gl, g)
        self.assertLessEqual(rois.shape[0], 12)
        self.assertGreaterEqual(int((labels > 0).sum()), 2)
        self.assertEqual(sorted(labels[labels > 0].tolist())[:2], [3, 7])


def main():
    global WORK
    args = sys.argv[1:]
    keep = None
    if len(args) >= 2 and args[0] == "--work":
        keep = args[1]
        args = args[2:]
    WORK = keep or tempfile.mkdtemp(prefix="demo_detector_test_")
    os.makedirs(WORK, exist_ok=True)
    torch.set_num_threads(1)
    try:
        if not os.path.exists(os.path.join(WORK, "data", "val.json")):
            run(os.path.join(REPO, "tools", "longtail_data", "generate.py"), "--out", os.path.join(WORK, "data"),
                "--seed", "0", "--scale", "tiny", "--workers", "1")
        result = unittest.main(argv=[sys.argv[0]] + args, exit=False, verbosity=2).result
        return 0 if result.wasSuccessful() else 1
    finally:
        if keep is None:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
