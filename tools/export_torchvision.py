#!/usr/bin/python3
"""Wraps a torchvision Faster R-CNN / Mask R-CNN into the LogN Serve model contract and scripts it.

The contract (docs/model-contract.md): `forward(images: List[Tensor]) -> List[Tuple[Tensor, Tensor]]`
takes already-preprocessed [3, H, W] float images (the runtime resizes and normalises them per the
manifest) and returns per image the RoI head's *pre-NMS* candidates: class-specific boxes [N, C, 4]
(xyxy, input pixels, clipped to the image, background column dropped) and the pre-softmax logits
[N, C+1] (background first, as torchvision). `classify_rois(images, rois)` returns the logits the RoI
head gives to caller-supplied boxes; `proposals(images)` the RPN's proposals [P, 4] (xyxy, input
pixels) with the RPN's TRAINING settings (rpn_pre/post_nms_top_n_train, its NMS threshold), the pool
the RoI head's training RoIs were sampled from. torchvision's own transform (normalise + resize) and
post-processing (softmax, threshold, NMS, top-k) are bypassed: the runtime does them, and LogN acts
between the logits and the softmax.

Examples:
  # A randomly initialised, small model for tests and benchmarks (no downloads).
  /usr/bin/python3 tools/export_torchvision.py --arch fasterrcnn_mobilenet_v3_large_320_fpn \
      --num-classes 8 --seed 0 --out /tmp/frcnn.pt
  # A trained LVIS model: weights from a state_dict, classes from the LVIS annotation file.
  /usr/bin/python3 tools/export_torchvision.py --arch maskrcnn_resnet50_fpn --weights lvis.pth \
      --lvis-categories lvis_v1_train.json --out lvis_mrcnn.pt

Writes <out> (TorchScript) and the manifest beside it (<out> with the extension replaced by .json,
or --manifest). With --reference DIR it also writes a deterministic test image and the outputs the
*eager* (unscripted) wrapper gives for it, for the C++ parity test.
"""

import argparse
import copy
import json
import math
import os
import sys
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection import image_list as tv_image_list
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import boxes as box_ops


class TorchvisionContract(torch.nn.Module):
    """The contract adapter around a torchvision GeneralizedRCNN (Faster / Mask R-CNN)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.backbone = model.backbone
        self.rpn = model.rpn
        self.roi_heads = model.roi_heads
        self.size_divisible: int = int(model.transform.size_divisible)
        # The RPN's training-time proposal numbers (per level before NMS, per image after). The
        # scripted RPN is in eval mode, where it reads its testing numbers, hence copies here.
        self.train_pre_nms_top_n: int = int(model.rpn._pre_nms_top_n["training"])
        self.train_post_nms_top_n: int = int(model.rpn._post_nms_top_n["training"])

    def _batch(self, images: List[torch.Tensor]) -> tv_image_list.ImageList:
        # Zero-pad to a common size divisible by size_divisible, as GeneralizedRCNNTransform does
        # (zero after normalisation = the mean colour).
        max_h = 0
        max_w = 0
        sizes: List[Tuple[int, int]] = []
        for img in images:
            torch._assert(img.dim() == 3 and img.shape[0] == 3, "images must be [3, H, W]")
            h = int(img.shape[1])
            w = int(img.shape[2])
            sizes.append((h, w))
            max_h = max(max_h, h)
            max_w = max(max_w, w)
        stride = float(self.size_divisible)
        max_h = int(math.ceil(float(max_h) / stride) * stride)
        max_w = int(math.ceil(float(max_w) / stride) * stride)
        batched = images[0].new_full([len(images), 3, max_h, max_w], 0)
        for i in range(len(images)):
            img = images[i]
            batched[i, :, : img.shape[1], : img.shape[2]].copy_(img)
        return tv_image_list.ImageList(batched, sizes)

    def forward(self, images: List[torch.Tensor]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        image_list = self._batch(images)
        features = self.backbone(image_list.tensors)
        proposals, _ = self.rpn(image_list, features)
        box_features = self.roi_heads.box_roi_pool(features, proposals, image_list.image_sizes)
        box_features = self.roi_heads.box_head(box_features)
        class_logits, box_regression = self.roi_heads.box_predictor(box_features)
        pred_boxes = self.roi_heads.box_coder.decode(box_regression, proposals)
        boxes_per_image = [p.shape[0] for p in proposals]
        num_logits = class_logits.shape[-1]
        pred_boxes = pred_boxes.reshape(-1, num_logits, 4)
        out: List[Tuple[torch.Tensor, torch.Tensor]] = []
        for boxes, logits, size in zip(
            pred_boxes.split(boxes_per_image, 0), class_logits.split(boxes_per_image, 0), image_list.image_sizes
        ):
            boxes = box_ops.clip_boxes_to_image(boxes, size)
            # Column 0 is torchvision's background: class-specific boxes exist for foreground only.
            out.append((boxes[:, 1:].contiguous(), logits))
        return out

    @torch.jit.export
    def classify_rois(self, images: List[torch.Tensor], rois: List[torch.Tensor]) -> List[torch.Tensor]:
        image_list = self._batch(images)
        features = self.backbone(image_list.tensors)
        rois = [r.to(image_list.tensors.dtype) for r in rois]
        box_features = self.roi_heads.box_roi_pool(features, rois, image_list.image_sizes)
        box_features = self.roi_heads.box_head(box_features)
        class_logits, _ = self.roi_heads.box_predictor(box_features)
        return list(class_logits.split([r.shape[0] for r in rois], 0))

    @torch.jit.export
    def proposals(self, images: List[torch.Tensor]) -> List[torch.Tensor]:
        """Per image the RPN's proposals [P, 4] (xyxy, input pixels, clipped; best objectness first
        within each level) with its training settings: RegionProposalNetwork.forward as in training."""
        image_list = self._batch(images)
        features = self.backbone(image_list.tensors)
        return self._training_proposals(image_list, features)

    def _training_proposals(self, image_list: tv_image_list.ImageList,
                            features: Dict[str, torch.Tensor]) -> List[torch.Tensor]:
        # RegionProposalNetwork.forward + filter_proposals (torchvision 0.14), with the training
        # top-n numbers in place of self.rpn.pre_nms_top_n() / post_nms_top_n().
        rpn = self.rpn
        feature_list = list(features.values())
        objectness_levels, deltas_levels = rpn.head(feature_list)
        anchors = rpn.anchor_generator(image_list, feature_list)
        num_images = len(anchors)
        num_anchors_per_level = [int(o.shape[1] * o.shape[2] * o.shape[3]) for o in objectness_levels]
        objectness, deltas = concat_box_prediction_layers(objectness_levels, deltas_levels)
        proposals = rpn.box_coder.decode(deltas.detach(), anchors).view(num_images, -1, 4)
        objectness = objectness.detach().reshape(num_images, -1)
        device = proposals.device
        levels = torch.cat(
            [torch.full((n,), idx, dtype=torch.int64, device=device) for idx, n in enumerate(num_anchors_per_level)], 0
        )
        levels = levels.reshape(1, -1).expand_as(objectness)
        top_n: List[torch.Tensor] = []
        offset = 0
        for ob in objectness.split(num_anchors_per_level, 1):
            k = min(self.train_pre_nms_top_n, int(ob.shape[1]))
            _, idx = ob.topk(k, dim=1)
            top_n.append(idx + offset)
            offset += int(ob.shape[1])
        top_n_idx = torch.cat(top_n, dim=1)
        batch_idx = torch.arange(num_images, device=device)[:, None]
        scores_all = torch.sigmoid(objectness[batch_idx, top_n_idx])
        levels = levels[batch_idx, top_n_idx]
        proposals = proposals[batch_idx, top_n_idx]
        out: List[torch.Tensor] = []
        for i in range(num_images):
            boxes = box_ops.clip_boxes_to_image(proposals[i], image_list.image_sizes[i])
            keep = box_ops.remove_small_boxes(boxes, rpn.min_size)
            boxes, scores, lvl = boxes[keep], scores_all[i][keep], levels[i][keep]
            keep = torch.where(scores >= rpn.score_thresh)[0]
            boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = box_ops.batched_nms(boxes, scores, lvl, rpn.nms_thresh)[: self.train_post_nms_top_n]
            out.append(boxes[keep].contiguous())
        return out


def rpn_training_proposals(model: torch.nn.Module, inputs: List[torch.Tensor]) -> List[torch.Tensor]:
    """torchvision's own RPN (a copy whose testing numbers are set to its training ones) on the inputs
    batched as TorchvisionContract does: the reference for TorchvisionContract.proposals."""
    rpn = copy.deepcopy(model.rpn).eval()
    rpn._pre_nms_top_n = {"training": rpn._pre_nms_top_n["training"], "testing": rpn._pre_nms_top_n["training"]}
    rpn._post_nms_top_n = {"training": rpn._post_nms_top_n["training"], "testing": rpn._post_nms_top_n["training"]}
    image_list = TorchvisionContract(model)._batch(inputs)
    with torch.inference_mode():
        boxes, _ = rpn(image_list, model.backbone(image_list.tensors))
    return boxes


def proposal_settings(model: torch.nn.Module) -> dict:
    """The manifest's proposalSettings for a torchvision model: its RPN's training settings."""
    return {
        "preNmsTopN": int(model.rpn._pre_nms_top_n["training"]),
        "postNmsTopN": int(model.rpn._post_nms_top_n["training"]),
        "nmsThreshold": float(model.rpn.nms_thresh),
    }


# ---- Reference preprocessing: the runtime's input policy, written in Python (same op order). ----


def preprocess(image_hwc_u8: torch.Tensor, policy: dict) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """uint8 [H, W, 3] RGB -> ([3, h, w] float model input, (h, w)), exactly as the C++ runtime."""
    h, w = int(image_hwc_u8.shape[0]), int(image_hwc_u8.shape[1])
    # Normalise, then resize: GeneralizedRCNNTransform's order, so a torchvision model sees
    # bit-identical inputs through the runtime and through its own transform.
    x = image_hwc_u8.permute(2, 0, 1).contiguous().to(torch.float32)
    if policy.get("channelOrder", "CHANNEL_ORDER_RGB") == "CHANNEL_ORDER_BGR":
        x = x.flip(0)
    if policy.get("valueRange", "VALUE_RANGE_UNIT") == "VALUE_RANGE_UNIT":
        x = x / 255.0
    mean = torch.tensor(policy["pixelMean"], dtype=torch.float32)[:, None, None]
    std = torch.tensor(policy["pixelStd"], dtype=torch.float32)[:, None, None]
    x = (x - mean) / std
    if "shorterSide" in policy:
        s = policy["shorterSide"]
        # float32 like torchvision's _resize_image_and_masks, then floor(dim * scale).
        scale = min(
            torch.tensor(float(s["shorterSide"]), dtype=torch.float32) / torch.tensor(float(min(h, w))),
            torch.tensor(float(s["maxLongerSide"]), dtype=torch.float32) / torch.tensor(float(max(h, w))),
        ).item()
        out_h, out_w = int(math.floor(h * scale)), int(math.floor(w * scale))
    else:
        out_h, out_w = int(policy["fixed"]["height"]), int(policy["fixed"]["width"])
    if (out_h, out_w) != (h, w):
        x = F.interpolate(x[None], size=(out_h, out_w), mode="bilinear", align_corners=False)[0]
    return x.contiguous(), (out_h, out_w)


def reference_image(height: int, width: int, seed: int) -> torch.Tensor:
    """A deterministic, structured uint8 [H, W, 3] image (smooth gradients plus a few rectangles)."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.linspace(0, 1, height)[:, None]
    xx = torch.linspace(0, 1, width)[None, :]
    img = torch.stack([yy * 200 + xx * 40, (1 - xx) * 180 + yy * 50, (xx * yy) * 255], dim=-1)
    for _ in range(6):
        y0 = int(torch.randint(0, height - 8, (1,), generator=g))
        x0 = int(torch.randint(0, width - 8, (1,), generator=g))
        y1 = min(height, y0 + int(torch.randint(8, height // 2 + 9, (1,), generator=g)))
        x1 = min(width, x0 + int(torch.randint(8, width // 2 + 9, (1,), generator=g)))
        img[y0:y1, x0:x1] = torch.rand(3, generator=g) * 255
    img = img + torch.rand(height, width, 3, generator=g) * 12
    return img.clamp(0, 255).to(torch.uint8)


def write_reference(module: torch.nn.Module, manifest: dict, out_dir: str, sizes, seed: int,
                    torchvision_model=None) -> None:
    """Writes image_<i>.u8 (raw HWC RGB) and reference.json: boxes scaled back to the original image
    the way the runtime does (x * W/w, y * H/h), and the raw logits; classify_rois' logits for two
    RoIs and the proposals (scaled back too) when the manifest declares them. With `torchvision_model`, also
    the final detections torchvision's own pipeline (transform, RoI heads' post-processing with its
    score_thresh / nms_thresh / detections_per_img, resize back) gives for each image."""
    os.makedirs(out_dir, exist_ok=True)
    policy = manifest["input"]
    images, inputs, resized = [], [], []
    for i, (h, w) in enumerate(sizes):
        img = reference_image(h, w, seed + i)
        images.append(img)
        x, hw = preprocess(img, policy)
        inputs.append(x)
        resized.append(hw)
    with torch.inference_mode():
        outs = module(inputs)
        rois_in = []
        for (h, w) in resized:
            rois_in.append(torch.tensor([[0.0, 0.0, w / 2.0, h / 2.0], [w / 4.0, h / 4.0, w - 1.0, h - 1.0]]))
        roi_logits = module.classify_rois(inputs, rois_in) if manifest.get("hasClassifyRois") else None
        proposals = module.proposals(inputs) if manifest.get("hasProposals") else None
        if proposals is not None and torchvision_model is not None:
            # The adapter's proposals must be torchvision's own RPN's with the training settings.
            want = rpn_training_proposals(torchvision_model, inputs)
            for got, ref in zip(proposals, want):
                if not torch.equal(got, ref):
                    raise AssertionError(f"proposals {list(got.shape)} differ from torchvision's RPN {list(ref.shape)}")
        tv_dets = None
        if torchvision_model is not None:
            tv_dets = torchvision_model([img.permute(2, 0, 1).contiguous().to(torch.float32) / 255.0 for img in images])
    entries = []
    for i, ((h, w), (rh, rw), (boxes, logits)) in enumerate(zip(sizes, resized, outs)):
        path = os.path.join(out_dir, f"image_{i}.u8")
        images[i].numpy().tofile(path)
        scale = torch.tensor([w / rw, h / rh, w / rw, h / rh], dtype=torch.float32)
        entry = {
            "path": path,
            "height": h,
            "width": w,
            "input_height": rh,
            "input_width": rw,
            "box_shape": list(boxes.shape),
            "boxes": (boxes * scale).reshape(-1).tolist(),
            "logits": logits.reshape(-1).tolist(),
        }
        if roi_logits is not None:
            # The same RoIs in original-image coordinates, and their logits.
            entry["rois"] = (rois_in[i] * scale).reshape(-1).tolist()
            entry["roi_logits"] = roi_logits[i].reshape(-1).tolist()
        if proposals is not None:
            entry["proposals"] = (proposals[i] * scale).reshape(-1).tolist()
        if tv_dets is not None:
            rh_ = torchvision_model.roi_heads
            entry["torchvision"] = {
                "score_thresh": float(rh_.score_thresh),
                "nms_thresh": float(rh_.nms_thresh),
                "detections_per_img": int(rh_.detections_per_img),
                "boxes": tv_dets[i]["boxes"].reshape(-1).tolist(),
                "scores": tv_dets[i]["scores"].tolist(),
                "labels": tv_dets[i]["labels"].tolist(),
            }
        entries.append(entry)
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump({"images": entries}, f)


# ---- Manifest ----

_FREQ = {"r": "FREQUENCY_GROUP_RARE", "c": "FREQUENCY_GROUP_COMMON", "f": "FREQUENCY_GROUP_FREQUENT"}


def classes_from_lvis(path: str) -> List[dict]:
    """Reads LVIS-style categories (the full annotation file or a bare list), ordered by id."""
    with open(path) as f:
        data = json.load(f)
    cats = data["categories"] if isinstance(data, dict) else data
    out = []
    for c in sorted(cats, key=lambda c: c["id"]):
        entry = {"id": int(c["id"]), "name": c["name"]}
        if c.get("frequency") in _FREQ:
            entry["frequency"] = _FREQ[c["frequency"]]
        for key, json_key in (("image_count", "imageCount"), ("instance_count", "instanceCount")):
            if key in c:
                entry[json_key] = int(c[key])
        out.append(entry)
    return out


def synthetic_classes(num_classes: int, seed: int) -> List[dict]:
    """Made-up classes with a long-tailed count profile, for tests and benchmarks."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in range(num_classes):
        instances = max(1, int(5000 * math.exp(-6.0 * c / max(1, num_classes - 1))))
        images = max(1, instances // (1 + int(torch.randint(1, 4, (1,), generator=g))))
        freq = "r" if images <= 10 else ("c" if images <= 100 else "f")
        out.append(
            {
                "id": c + 1,
                "name": f"class_{c + 1}",
                "frequency": _FREQ[freq],
                "imageCount": images,
                "instanceCount": instances,
            }
        )
    return out


def build_model(args) -> torch.nn.Module:
    builders = torchvision.models.detection.__dict__
    if args.arch not in builders:
        raise SystemExit(f"unknown --arch {args.arch}")
    kwargs = dict(weights=None, weights_backbone=None, num_classes=args.num_classes + 1)
    if args.min_size:
        kwargs["min_size"] = args.min_size
    if args.max_size:
        kwargs["max_size"] = args.max_size
    if args.rpn_post_nms_top_n:
        kwargs["rpn_post_nms_top_n_test"] = args.rpn_post_nms_top_n
    torch.manual_seed(args.seed)
    model = builders[args.arch](**kwargs)
    if args.weights:
        state = torch.load(args.weights, map_location="cpu")
        if isinstance(state, dict) and "model" in state:
            state = state["model"]
        model.load_state_dict(state)
    return model.eval()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="fasterrcnn_mobilenet_v3_large_320_fpn",
                   help="a torchvision.models.detection builder (Faster or Mask R-CNN)")
    p.add_argument("--num-classes", type=int, default=0, help="foreground classes C (default: from --lvis-categories)")
    p.add_argument("--weights", help="state_dict to load (default: random initialisation)")
    p.add_argument("--lvis-categories", help="LVIS annotation json (or list of categories) for the classes")
    p.add_argument("--min-size", type=int, default=0, help="shorter side S (default: the architecture's)")
    p.add_argument("--max-size", type=int, default=0, help="longer side limit L (default: the architecture's)")
    p.add_argument("--rpn-post-nms-top-n", type=int, default=0,
                   help="proposals per image at inference, i.e. candidates N (default: the architecture's)")
    p.add_argument("--name", help="model name in the manifest (default: basename of --out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="TorchScript file to write")
    p.add_argument("--manifest", help="manifest path (default: --out with extension .json)")
    p.add_argument("--reference", help="directory for a parity reference (test image + eager outputs)")
    p.add_argument("--reference-sizes", default="150x200,97x131", help="HxW of reference images")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    classes = classes_from_lvis(args.lvis_categories) if args.lvis_categories else None
    if classes is not None and args.num_classes and args.num_classes != len(classes):
        raise SystemExit(f"--num-classes {args.num_classes} but {len(classes)} categories")
    if classes is None:
        if args.num_classes <= 0:
            raise SystemExit("give --num-classes or --lvis-categories")
        classes = synthetic_classes(args.num_classes, args.seed)
    args.num_classes = len(classes)

    model = build_model(args)
    transform = model.transform
    if transform.fixed_size is not None:
        resize = {"fixed": {"height": int(transform.fixed_size[1]), "width": int(transform.fixed_size[0])}}
    else:
        resize = {"shorterSide": {"shorterSide": int(transform.min_size[-1]), "maxLongerSide": int(transform.max_size)}}
    manifest = {
        "name": args.name or os.path.splitext(os.path.basename(args.out))[0],
        "description": f"torchvision {args.arch} via tools/export_torchvision.py"
        + (f" (weights {os.path.basename(args.weights)})" if args.weights else f" (random init, seed {args.seed})"),
        "classes": classes,
        "background": "BACKGROUND_POSITION_FIRST",
        "boxLayout": "BOX_LAYOUT_CLASS_SPECIFIC",
        "input": dict(
            resize,
            pixelMean=[float(v) for v in transform.image_mean],
            pixelStd=[float(v) for v in transform.image_std],
            channelOrder="CHANNEL_ORDER_RGB",
            valueRange="VALUE_RANGE_UNIT",
        ),
        "hasClassifyRois": True,
        "hasProposals": True,
        "proposalSettings": proposal_settings(model),
    }

    wrapper = TorchvisionContract(model).eval()
    scripted = torch.jit.script(wrapper)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    scripted.save(args.out)
    manifest_path = args.manifest or os.path.splitext(args.out)[0] + ".json"
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    if args.reference:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.reference_sizes.split(",")]
        write_reference(wrapper, manifest, args.reference, sizes, args.seed, torchvision_model=model)
    print(f"wrote {args.out} and {manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
