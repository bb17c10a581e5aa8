"""Training, export, evaluation and the post-hoc LogN preview of the demo detectors.

Used by tools/train_demo_detector.py (the CLI, see its --help) and tests/demo_detector/.
"""

import json
import math
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from demo_detector import model as dm

TOOLS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DIR = os.path.dirname(TOOLS_DIR)
sys.path.insert(0, TOOLS_DIR)
import export_torchvision  # noqa: E402  (classes_from_lvis and the runtime's reference preprocessing)

PIXEL_MEAN = [0.5, 0.5, 0.5]
PIXEL_STD = [0.25, 0.25, 0.25]

# The recipe (docs/demo-detectors.md). Every number here is part of what the README reports.
RPN_BATCH = 256
RPN_POS_FRACTION = 0.5
RPN_POS_IOU = 0.7
RPN_NEG_IOU = 0.3
ROI_BATCH = 512
ROI_POS_FRACTION = 0.25
ROI_POS_IOU = 0.5
# The RPN's proposals for the RoI head: top 1000 -> NMS 0.7 -> 600. The exported proposals() method
# uses the same settings (model attributes train_pre/post_nms_top_n, defaulting to these).
TRAIN_PRE_NMS = dm.TRAIN_PRE_NMS_TOP_N
TRAIN_POST_NMS = dm.TRAIN_POST_NMS_TOP_N


# ---------------------------------------------------------------- data


class Split:
    """One LVIS-format split held in memory: uint8 images [3, H, W] and per-image ground truth."""

    def __init__(self, root: str, split: str):
        with open(os.path.join(root, split + ".json")) as f:
            self.data = json.load(f)
        self.root = root
        self.split = split
        self.categories = sorted(self.data["categories"], key=lambda c: c["id"])
        self.cat_to_col = {c["id"]: i + 1 for i, c in enumerate(self.categories)}  # background is 0
        self.images = sorted(self.data["images"], key=lambda im: im["id"])
        anns: Dict[int, List[dict]] = {im["id"]: [] for im in self.images}
        for a in self.data["annotations"]:
            anns[a["image_id"]].append(a)
        self.pixels: List[torch.Tensor] = []
        self.gt_boxes: List[torch.Tensor] = []
        self.gt_labels: List[torch.Tensor] = []
        from torchvision.io import ImageReadMode, read_image  # training-time only

        for im in self.images:
            path = os.path.join(root, split, im["file_name"])
            self.pixels.append(read_image(path, ImageReadMode.RGB))
            boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                     for a in sorted(anns[im["id"]], key=lambda a: a["id"])]
            labels = [self.cat_to_col[a["category_id"]] for a in sorted(anns[im["id"]], key=lambda a: a["id"])]
            self.gt_boxes.append(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
            self.gt_labels.append(torch.tensor(labels, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.images)

    def image_size(self) -> int:
        return int(min(self.pixels[0].shape[1], self.pixels[0].shape[2]))

    def normalized(self, i: int) -> torch.Tensor:
        """The model input the runtime builds (export_torchvision.preprocess; no resize here since
        the manifest's shorter side is the dataset's image size)."""
        x = self.pixels[i].to(torch.float32) / 255.0
        mean = torch.tensor(PIXEL_MEAN)[:, None, None]
        std = torch.tensor(PIXEL_STD)[:, None, None]
        return (x - mean) / std


# ---------------------------------------------------------------- sampling and losses


def sample_fg_bg(labels: torch.Tensor, batch: int, pos_fraction: float, gen: torch.Generator):
    """Random positive / negative indices (labels > 0 positive, == 0 negative, < 0 ignored)."""
    pos = torch.nonzero(labels > 0).flatten()
    neg = torch.nonzero(labels == 0).flatten()
    n_pos = min(int(batch * pos_fraction), pos.numel())
    n_neg = min(batch - n_pos, neg.numel())
    pos = pos[torch.randperm(pos.numel(), generator=gen)[:n_pos]]
    neg = neg[torch.randperm(neg.numel(), generator=gen)[:n_neg]]
    return pos, neg


def rpn_targets(anchors: torch.Tensor, gt: torch.Tensor, size: Tuple[int, int]):
    """Per anchor: 1 positive, 0 negative, -1 ignored; and its matched ground truth box."""
    h, w = size
    labels = torch.full([anchors.shape[0]], -1, dtype=torch.long)
    cx = (anchors[:, 0] + anchors[:, 2]) * 0.5
    cy = (anchors[:, 1] + anchors[:, 3]) * 0.5
    inside = (cx < w) & (cy < h)
    if gt.shape[0] == 0:
        labels[inside] = 0
        return labels, torch.zeros_like(anchors)
    iou = dm.box_iou(anchors, gt)  # [A, G]
    iou[~inside] = -1.0
    best, matched = iou.max(dim=1)
    labels[(best >= 0) & (best < RPN_NEG_IOU)] = 0
    labels[best >= RPN_POS_IOU] = 1
    # Each ground truth box also claims its best anchors (Faster R-CNN's low-quality matches).
    best_per_gt = iou.max(dim=0)[0]
    claim = (iou == best_per_gt[None, :]) & (best_per_gt[None, :] > 0)
    labels[claim.any(dim=1)] = 1
    return labels, gt[matched]


def roi_targets(cands: torch.Tensor, gt: torch.Tensor, gt_labels: torch.Tensor):
    if gt.shape[0] == 0:
        return torch.zeros([cands.shape[0]], dtype=torch.long), torch.zeros_like(cands)
    iou = dm.box_iou(cands, gt)
    best, matched = iou.max(dim=1)
    labels = gt_labels[matched].clone()
    labels[best < ROI_POS_IOU] = 0
    return labels, gt[matched]


def sample_rois(props: torch.Tensor, gt: torch.Tensor, gt_labels: torch.Tensor, gen: torch.Generator):
    """Proposals + ground truth as proposals -> 512 random RoIs, at most 25 % positives (IoU >= 0.5)."""
    cands = torch.cat([props, gt], dim=0)
    labels, matched = roi_targets(cands, gt, gt_labels)
    pos, neg = sample_fg_bg(labels, ROI_BATCH, ROI_POS_FRACTION, gen)
    keep = torch.cat([pos, neg])
    return cands[keep], labels[keep], matched[keep]


def fast_proposals(net: dm.DemoDetector, obj, reg, anchors, size) -> torch.Tensor:
    """One image's proposals with the training settings: DemoDetector.image_proposals as the exported
    proposals() method calls it, but with torchvision's C++ NMS (training time only; the same greedy
    semantics as the exported model's aten NMS, which the tests check)."""
    from torchvision.ops import nms  # training-time only

    boxes, scores = net.proposal_candidates(obj, reg, anchors, size, net.train_pre_nms_top_n)
    return boxes[nms(boxes, scores, net.rpn_nms_thresh)[:net.train_post_nms_top_n]]


class Trainer:
    def __init__(self, net: dm.DemoDetector, head: str, args):
        self.net = net
        self.head = head
        self.args = args
        # The official LogN code's head: BatchNorm over the C+1 logits, no affine, training only.
        self.logit_bn = torch.nn.BatchNorm1d(net.num_classes + 1, affine=False) if head == "logn" else None

    def step_losses(self, batch_x: torch.Tensor, gts: List[torch.Tensor], gls: List[torch.Tensor],
                    gen: torch.Generator) -> Dict[str, torch.Tensor]:
        net = self.net
        p3, p2 = net.features(batch_x)
        obj, reg = net.rpn_outputs(p3)
        size = (int(batch_x.shape[2]), int(batch_x.shape[3]))
        anchors = net.anchors(int(p3.shape[2]), int(p3.shape[3]), batch_x.device)
        rpn_cls, rpn_box, n_rpn = [], [], 0
        rois_feats, roi_labels, roi_deltas_t = [], [], []
        for i in range(batch_x.shape[0]):
            labels, matched = rpn_targets(anchors, gts[i], size)
            pos, neg = sample_fg_bg(labels, RPN_BATCH, RPN_POS_FRACTION, gen)
            idx = torch.cat([pos, neg])
            rpn_cls.append(F.binary_cross_entropy_with_logits(obj[i][idx], (labels[idx] > 0).float(), reduction="sum"))
            if pos.numel() > 0:
                t = dm.encode(anchors[pos], matched[pos], net.rpn_weights)
                rpn_box.append(F.smooth_l1_loss(reg[i][pos], t, beta=1.0 / 9, reduction="sum"))
            n_rpn += idx.numel()
            with torch.no_grad():
                props = fast_proposals(net, obj[i].detach(), reg[i].detach(), anchors, size)
            rois, rl, rm = sample_rois(props, gts[i], gls[i], gen)
            rois_feats.append(net.roi_align(p2[i], rois))
            roi_labels.append(rl)
            roi_deltas_t.append(dm.encode(rois, rm, net.roi_weights))
        logits, deltas = net.roi_head(torch.cat(rois_feats))
        labels = torch.cat(roi_labels)
        targets = torch.cat(roi_deltas_t)
        if self.logit_bn is not None:
            logits = self.logit_bn(logits)
        pos = labels > 0
        n_rpn = max(n_rpn, 1)
        return {
            "rpn_cls": torch.stack(rpn_cls).sum() / n_rpn,
            "rpn_box": (torch.stack(rpn_box).sum() if rpn_box else obj.sum() * 0) / n_rpn,
            "cls": F.cross_entropy(logits, labels),
            "box": F.smooth_l1_loss(deltas[pos], targets[pos], beta=1.0, reduction="sum") / max(labels.numel(), 1),
        }


def lr_at(it: int, iters: int, base: float, warmup: int) -> float:
    if it < warmup:
        return base * (0.1 + 0.9 * it / warmup)
    t = (it - warmup) / max(1, iters - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * t))


def repeat_factors(split: Split, threshold: float) -> torch.Tensor:
    """LVIS's repeat-factor sampling (Gupta et al. 2019; detectron2's RepeatFactorTrainingSampler):
    r_c = max(1, sqrt(t / f_c)) with f_c the fraction of training images holding class c, and per
    image r_i = max over its classes (1 for an image without annotations). float64 [N]."""
    n = len(split)
    images_of: Dict[int, int] = {}
    for labels in split.gt_labels:
        for c in set(labels.tolist()):
            images_of[c] = images_of.get(c, 0) + 1
    r_class = {c: max(1.0, math.sqrt(threshold / (k / n))) for c, k in images_of.items()}
    return torch.tensor([max([r_class[c] for c in set(lab.tolist())], default=1.0) for lab in split.gt_labels],
                        dtype=torch.float64)


def epoch_order(n: int, factors: Optional[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    """One epoch's image order: a permutation of all images, or with repeat factors each image
    floor(r_i) times plus once more with probability frac(r_i) (stochastic rounding), shuffled."""
    if factors is None:
        return torch.randperm(n, generator=gen)
    whole = factors.floor()
    extra = (torch.rand(n, generator=gen, dtype=torch.float64) < factors - whole).to(torch.float64)
    idx = torch.repeat_interleave(torch.arange(n), (whole + extra).to(torch.long))
    return idx[torch.randperm(idx.numel(), generator=gen)]


def flip_batch(x: torch.Tensor, gts: List[torch.Tensor], flips: torch.Tensor) -> None:
    """Horizontal flip in place of the images (and their boxes) whose flag is set."""
    w = x.shape[3]
    for j in range(x.shape[0]):
        if bool(flips[j]):
            x[j] = x[j].flip(-1)
            b = gts[j]
            gts[j] = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], dim=1)


def train(net: dm.DemoDetector, train_split: Split, head: str, args, log,
          trainer_out: Optional[list] = None) -> Dict[str, float]:
    """Trains `net` in place. With `trainer_out`, appends the Trainer (its logit_bn holds the
    BatchNorm's trained running statistics for head "logn")."""
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    trainer = Trainer(net, head, args)
    if trainer_out is not None:
        trainer_out.append(trainer)
    net.train()
    if trainer.logit_bn is not None:
        trainer.logit_bn.train()
    params_decay = [p for n, p in net.named_parameters() if p.dim() > 1]
    params_no = [p for n, p in net.named_parameters() if p.dim() <= 1]
    opt = torch.optim.SGD(
        [{"params": params_decay, "weight_decay": args.weight_decay}, {"params": params_no, "weight_decay": 0.0}],
        lr=args.lr, momentum=0.9)
    n = len(train_split)
    inputs = torch.stack([train_split.normalized(i) for i in range(n)])  # all images share one size
    rfs = getattr(args, "rfs_threshold", 0.0) or 0.0
    factors = repeat_factors(train_split, rfs) if rfs > 0 else None
    if factors is not None:
        log(f"repeat-factor sampling t={rfs}: {int((factors > 1).sum())} of {n} images repeated, "
            f"expected epoch {float(factors.sum()):.1f} images, max factor {float(factors.max()):.3f}")
    order = epoch_order(n, factors, gen)
    pos = 0
    start = time.time()
    running: Dict[str, float] = {}
    for it in range(args.iters):
        lr = lr_at(it, args.iters, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        if pos + args.batch > order.numel():
            order = epoch_order(n, factors, gen)
            pos = 0
        idx = order[pos: pos + args.batch].tolist()
        pos += args.batch
        x = inputs[idx].clone()
        gts = [train_split.gt_boxes[i].clone() for i in idx]
        gls = [train_split.gt_labels[i] for i in idx]
        flip_batch(x, gts, torch.rand(len(idx), generator=gen) < 0.5)
        losses = trainer.step_losses(x, gts, gls, gen)
        loss = sum(losses.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        for k, v in losses.items():
            running[k] = running.get(k, float(v)) * 0.95 + float(v) * 0.05
        if it % args.log_every == 0 or it == args.iters - 1:
            el = time.time() - start
            log(f"iter {it:5d}/{args.iters} lr {lr:.4f} " + " ".join(f"{k} {v:.3f}" for k, v in running.items())
                + f"  {el:.0f}s")
    net.eval()
    return {"train_seconds": time.time() - start, **{"final_" + k: v for k, v in running.items()}}


# ---------------------------------------------------------------- export and contract


def manifest_for(name: str, description: str, categories: List[dict], image_size: int) -> dict:
    return {
        "name": name,
        "description": description,
        "classes": _classes(categories),
        "background": "BACKGROUND_POSITION_FIRST",
        "boxLayout": "BOX_LAYOUT_CLASS_AGNOSTIC",
        "input": {
            "shorterSide": {"shorterSide": image_size, "maxLongerSide": 2 * image_size},
            "pixelMean": PIXEL_MEAN,
            "pixelStd": PIXEL_STD,
            "channelOrder": "CHANNEL_ORDER_RGB",
            "valueRange": "VALUE_RANGE_UNIT",
        },
        "hasClassifyRois": True,
        "hasProposals": True,
        "proposalSettings": proposal_settings(),
    }


def proposal_settings(net: Optional[dm.DemoDetector] = None) -> dict:
    """The manifest's proposalSettings: the training settings the exported proposals() uses (the
    recipe's, or a given model's attributes)."""
    if net is None:
        return {"preNmsTopN": TRAIN_PRE_NMS, "postNmsTopN": TRAIN_POST_NMS, "nmsThreshold": dm.RPN_NMS_THRESH}
    return {"preNmsTopN": int(net.train_pre_nms_top_n), "postNmsTopN": int(net.train_post_nms_top_n),
            "nmsThreshold": float(net.rpn_nms_thresh)}


def _classes(categories: List[dict]) -> List[dict]:
    freq = {"r": "FREQUENCY_GROUP_RARE", "c": "FREQUENCY_GROUP_COMMON", "f": "FREQUENCY_GROUP_FREQUENT"}
    out = []
    for c in sorted(categories, key=lambda c: c["id"]):
        e = {"id": int(c["id"]), "name": c["name"]}
        if c.get("frequency") in freq:
            e["frequency"] = freq[c["frequency"]]
        if "image_count" in c:
            e["imageCount"] = int(c["image_count"])
        if "instance_count" in c:
            e["instanceCount"] = int(c["instance_count"])
        out.append(e)
    return out


def export(net: dm.DemoDetector, path: str, manifest: dict) -> torch.jit.ScriptModule:
    """Scripts `net` (forward, classify_rois, proposals) to `path` and writes the manifest beside it."""
    if manifest.get("hasProposals") and manifest.get("proposalSettings") != proposal_settings(net):
        raise ValueError(f"manifest proposalSettings {manifest.get('proposalSettings')} but the model "
                         f"uses {proposal_settings(net)}")
    net.eval()
    scripted = torch.jit.script(net)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    scripted.save(path)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(manifest, f, indent=1)
    return scripted


def check_contract(pt_path: str) -> List[str]:
    """Re-runs the checks DetectorRuntime::Load does (server/runtime/detector_runtime.cc) on the saved
    files: manifest fields, forward on a blank mid-grey image of the validation size, classify_rois
    on one RoI, proposals' shape; plus: no operator outside aten/prim (the server has no torchvision library).
    Returns the problems found (empty: conforms)."""
    problems = []
    with open(os.path.splitext(pt_path)[0] + ".json") as f:
        man = json.load(f)
    c = len(man["classes"])
    ids = [k["id"] for k in man["classes"]]
    names = [k["name"] for k in man["classes"]]
    if len(set(ids)) != c or len(set(names)) != c or not all(names):
        problems.append("class ids / names not unique and non-empty")
    pol = man["input"]
    if len(pol["pixelMean"]) != 3 or len(pol["pixelStd"]) != 3 or min(pol["pixelStd"]) <= 0:
        problems.append("bad pixel mean/std")
    m = torch.jit.load(pt_path)
    m.eval()
    s = pol["shorterSide"]
    height = s["shorterSide"]
    width = min(s["maxLongerSide"], height * 4 // 3)
    blank = torch.full([height, width, 3], 128, dtype=torch.uint8)
    x, _ = export_torchvision.preprocess(blank, pol)
    with torch.inference_mode():
        out = m([x])
        if not isinstance(out, list) or len(out) != 1:
            problems.append(f"forward returned {type(out)} of len {len(out) if isinstance(out, list) else '?'}")
        else:
            boxes, logits = out[0]
            if logits.dim() != 2 or logits.shape[1] != c + 1 or not logits.is_floating_point():
                problems.append(f"logits {list(logits.shape)}, need [N, {c + 1}]")
            elif boxes.dim() != 2 or boxes.shape[0] != logits.shape[0] or boxes.shape[1] != 4:
                problems.append(f"boxes {list(boxes.shape)}, need [{logits.shape[0]}, 4]")
            elif logits.shape[0] == 0:
                problems.append("no candidates on the blank image")
        if man.get("hasClassifyRois"):
            if not hasattr(m, "classify_rois"):
                problems.append("hasClassifyRois but no classify_rois method")
            else:
                r = m.classify_rois([x], [torch.tensor([[0.0, 0.0, width / 2.0, height / 2.0]])])
                if len(r) != 1 or list(r[0].shape) != [1, c + 1]:
                    problems.append(f"classify_rois gave {[list(t.shape) for t in r]}, need [[1, {c + 1}]]")
        if man.get("hasProposals"):
            if not man.get("hasClassifyRois"):
                problems.append("hasProposals needs hasClassifyRois")
            if not hasattr(m, "proposals"):
                problems.append("hasProposals but no proposals method")
            else:
                p = m.proposals([x])
                if len(p) != 1 or p[0].dim() != 2 or p[0].shape[1] != 4 or not p[0].is_floating_point():
                    problems.append(f"proposals gave {[list(t.shape) for t in p]}, need [[P, 4]]")
    ops = set()
    methods = [m.forward] + [getattr(m, k) for k in ("classify_rois", "proposals") if hasattr(m, k)]
    for meth in methods:
        for node in meth.graph.nodes():
            ops.add(node.kind())
    for sub in m.modules():
        for node in sub.forward.graph.nodes() if hasattr(sub, "forward") else []:
            ops.add(node.kind())
    foreign = sorted(k for k in ops if not (k.startswith("aten::") or k.startswith("prim::")))
    if foreign:
        problems.append("operators outside aten/prim: " + ", ".join(foreign))
    return problems


# ---------------------------------------------------------------- inference, evaluation, LogN preview


def run_model(scripted, split: Split, batch: int = 8) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    outs = []
    with torch.inference_mode():
        for s in range(0, len(split), batch):
            outs.extend(scripted([split.normalized(i) for i in range(s, min(len(split), s + batch))]))
    return outs


def postprocess(boxes: torch.Tensor, logits: torch.Tensor, score_thresh=1e-4, nms_iou=0.5, top_k=300):
    """The runtime's post-processing (server/runtime/postprocess.h): softmax over C+1, foreground
    pairs with score > threshold, class-wise greedy NMS (IoU > 0.5 suppresses), top 300."""
    from torchvision.ops import batched_nms  # evaluation-time only

    probs = torch.softmax(logits, dim=1)[:, 1:]
    cand, cls = torch.nonzero(probs > score_thresh, as_tuple=True)
    scores = probs[cand, cls]
    b = boxes[cand]
    keep = batched_nms(b, scores, cls, nms_iou)[:top_k]
    return b[keep], scores[keep], cls[keep]


def write_results(split: Split, outs, calibrate, path: str) -> int:
    res = []
    for im, (boxes, logits) in zip(split.images, outs):
        b, s, c = postprocess(boxes, calibrate(logits))
        for box, score, cls in zip(b.tolist(), s.tolist(), c.tolist()):
            res.append({"image_id": im["id"], "category_id": split.categories[cls]["id"],
                        "bbox": [round(box[0], 3), round(box[1], 3), round(box[2] - box[0], 3),
                                 round(box[3] - box[1], 3)], "score": round(score, 6)})
    with open(path, "w") as f:
        json.dump(res, f)
    return len(res)


def evaluate(gt_path: str, dt_path: str, evaluator: Optional[str]) -> Dict[str, float]:
    if evaluator:
        out = subprocess.run([evaluator, "--gt", gt_path, "--dt", dt_path, "--json"], check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out)
    ref = os.path.join(REPO_DIR, "client", "eval", "testing", "reference_lvis_eval.py")
    out = subprocess.run([sys.executable, ref, "--gt", gt_path, "--dt", dt_path], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def roi_statistics(net: dm.DemoDetector, split: Split, seed: int, log) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Exact per-column mean and (population) variance of the raw logits of RoIs sampled from the
    training split as in training (proposals + ground truth, 512 per image, <= 25 % positives),
    no flip. Float64 sums."""
    gen = torch.Generator().manual_seed(seed + 1)
    net.eval()
    width = net.num_classes + 1
    s1 = torch.zeros(width, dtype=torch.float64)
    s2 = torch.zeros(width, dtype=torch.float64)
    count = 0
    with torch.inference_mode():
        for start in range(0, len(split), 16):
            idx = list(range(start, min(len(split), start + 16)))
            x = torch.stack([split.normalized(i) for i in idx])
            p3, p2 = net.features(x)
            obj, reg = net.rpn_outputs(p3)
            anchors = net.anchors(int(p3.shape[2]), int(p3.shape[3]), x.device)
            size = (int(x.shape[2]), int(x.shape[3]))
            for j, i in enumerate(idx):
                props = fast_proposals(net, obj[j], reg[j], anchors, size)
                rois, _, _ = sample_rois(props, split.gt_boxes[i], split.gt_labels[i], gen)
                logits, _ = net.roi_head(net.roi_align(p2[j], rois))
                l64 = logits.to(torch.float64)
                s1 += l64.sum(0)
                s2 += (l64 * l64).sum(0)
                count += logits.shape[0]
    mean = s1 / count
    var = (s2 / count - mean * mean).clamp(min=0)
    return mean, var, count


OFFICIAL_STATS_MOMENTUM = 5e-5  # the official code's statistics pass: BN momentum during the lr-0 epoch
OFFICIAL_VARIANCE_FLOOR = 1e-11  # the official inference formula: 1 / sqrt(max(var, 1e-11)), no eps


def official_statistics_pass(net: dm.DemoDetector, logit_bn: torch.nn.BatchNorm1d, split: Split, args, log,
                             momentum: float = OFFICIAL_STATS_MOMENTUM) -> torch.nn.BatchNorm1d:
    """The official LogN code's statistics pass for a model trained with BatchNorm1d(C+1) on its logits:
    one more epoch over the training split at learning rate 0 (the same sampler, flip and RoI
    sampling as training: proposals + ground truth, 512 RoIs per image, <= 25 % positives), the
    logits' BatchNorm in training mode with momentum `momentum`, starting from its trained running
    statistics. Learning rate 0 leaves every weight as it is; the backbone's BatchNorms are in eval
    mode (the exported model's statistics; mmdetection's ResNet keeps its BNs frozen the same way),
    so the logits are exactly the exported model's. Returns the updated copy of the BatchNorm."""
    import copy

    bn = copy.deepcopy(logit_bn)
    bn.momentum = momentum
    bn.train()
    gen = torch.Generator().manual_seed(args.seed + 2)
    net.eval()
    n = len(split)
    rfs = getattr(args, "rfs_threshold", 0.0) or 0.0
    order = epoch_order(n, repeat_factors(split, rfs) if rfs > 0 else None, gen)
    start = time.time()
    rois_seen = 0
    steps = order.numel() // args.batch
    with torch.no_grad():
        for it in range(steps):
            idx = order[it * args.batch: (it + 1) * args.batch].tolist()
            x = torch.stack([split.normalized(i) for i in idx])
            gts = [split.gt_boxes[i].clone() for i in idx]
            gls = [split.gt_labels[i] for i in idx]
            flip_batch(x, gts, torch.rand(len(idx), generator=gen) < 0.5)
            p3, p2 = net.features(x)
            obj, reg = net.rpn_outputs(p3)
            size = (int(x.shape[2]), int(x.shape[3]))
            anchors = net.anchors(int(p3.shape[2]), int(p3.shape[3]), x.device)
            feats = []
            for j in range(len(idx)):
                props = fast_proposals(net, obj[j], reg[j], anchors, size)
                rois, _, _ = sample_rois(props, gts[j], gls[j], gen)
                feats.append(net.roi_align(p2[j], rois))
            logits, _ = net.roi_head(torch.cat(feats))
            bn(logits)
            rois_seen += logits.shape[0]
    log(f"official statistics pass: {steps} iterations x {args.batch} images at lr 0, BN momentum {momentum}, "
        f"{rois_seen} RoIs, {time.time() - start:.0f}s")
    bn.eval()
    return bn


def save_official_stats(bn: torch.nn.BatchNorm1d, path: str, meta: dict) -> None:
    """Writes the BatchNorm's running statistics as an mmdetection-style checkpoint, the layout of
    the official LogN code's released models (and what tools/import_mmdet_logn.py reads):
    {'meta': ..., 'state_dict': {'roi_head.bbox_head.bn.running_mean' / running_var /
    num_batches_tracked}}, BACKGROUND LAST (mmdetection's order; ours is background first)."""
    def bg_last(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t[1:], t[:1]]).clone()

    state = {
        "roi_head.bbox_head.bn.running_mean": bg_last(bn.running_mean.detach().to(torch.float32)),
        "roi_head.bbox_head.bn.running_var": bg_last(bn.running_var.detach().to(torch.float32)),
        "roi_head.bbox_head.bn.num_batches_tracked": bn.num_batches_tracked.detach().clone(),
    }
    torch.save({"meta": meta, "state_dict": state}, path)


def load_official_stats(path: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """save_official_stats' file -> (mean, var) in OUR column order (background first), float64."""
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    m = sd["roi_head.bbox_head.bn.running_mean"].to(torch.float64)
    v = sd["roi_head.bbox_head.bn.running_var"].to(torch.float64)
    return torch.cat([m[-1:], m[:-1]]), torch.cat([v[-1:], v[:-1]])


def calibrators(mean: torch.Tensor, var: torch.Tensor, instance_counts: List[int], eps: float = 1e-5):
    """The settings of the preview, as functions of the raw logits [N, C+1] (background column 0).
    Same formulas as calibration/calibrator.h:
      none   the raw logits
      loga   x_c - log pi_c for foreground c (instance counts, tau = 1)
      bn     (x - mu) / sqrt(var + eps) on all C+1 columns (plain BatchNorm inference, no beta)
      logn   Algorithm 1 with the official code's inference formula: foreground
             (x_c - mu_c + beta) / sqrt(max(var_c, 1e-11)), beta = min foreground mu, background untouched
      mu     x_c - mu_c (foreground; the service's logn(mu): no beta, no sigma)
      beta   x_c + beta (foreground; logn(beta))"""
    m = mean.to(torch.float32)
    v = var.to(torch.float32)
    beta = float(mean[1:].min())
    logn_shift = m.clone()
    logn_shift[1:] = m[1:] - beta
    logn_shift[0] = 0.0
    logn_scale = torch.sqrt(var.clamp(min=OFFICIAL_VARIANCE_FLOOR)).to(torch.float32)
    logn_scale[0] = 1.0
    prior = torch.tensor(instance_counts, dtype=torch.float64)
    log_prior = torch.log(prior / prior.sum()).to(torch.float32)
    bn_scale = torch.sqrt(v + eps)

    def none(x):
        return x

    def loga(x):
        y = x.clone()
        y[:, 1:] = x[:, 1:] - log_prior
        return y

    def plain_bn(x):
        return (x - m) / bn_scale

    def logn(x):
        return (x - logn_shift) / logn_scale

    def mu_only(x):
        y = x.clone()
        y[:, 1:] = x[:, 1:] - m[1:]
        return y

    def beta_only(x):
        y = x.clone()
        y[:, 1:] = x[:, 1:] + beta
        return y

    return {"none": none, "loga": loga, "bn": plain_bn, "logn": logn, "mu": mu_only, "beta": beta_only}, beta
