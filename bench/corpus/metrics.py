"""Task and fidelity metrics of the corpus models, as hasten `module:function` metrics.

Each is `fn(candidate, reference, labels) -> float` (higher is better), where candidate / reference are the
model's first output over the evaluation set, concatenated along axis 0 (hasten runs one item at a time):
- `ddddocr_exact`:   ddddocr's CTC output (T·N, 1, C): greedy-decoded text equals the label (case-insensitive).
- `ppocr_exact`:     PP-OCR rec's softmax (N, T, 6625): greedy-decoded text equals the label (spaces ignored:
                     the Chinese model reads word gaps unreliably).
- `mask_iou`:        PP-OCR det's probability map (N, 1, H, W): IoU of the p > 0.3 masks with the reference's.
- `yolox_box_f1`:    ddddocr det (N, 3549, 6), YOLOX head at 416²: F1 of the boxes (score > 0.3, after NMS)
                     matched to the reference's at IoU >= 0.5; 1 for an item where neither has a box.
- `yolov8_scores_cosine`: nudenet (N, 22, K): cosine of the class-score block against the reference, per item.
- `centred_cosine`:  random-init models: per-item cosine after subtracting the reference's mean over items
                     from both (untrained nets give nearly the same output for every input; the common part
                     would hide the error in what differs between items).
Labels are code points, 0-padded (bench.corpus.models.encode_texts).
"""

from __future__ import annotations

import ast
import functools

import numpy as np

from bench.corpus.models import decode_texts, package_file


@functools.cache
def _ddddocr_charset() -> tuple[str, ...]:
    """ddddocr's CHARSET_BETA (the charset of common.onnx), read from its source without importing it."""
    tree = ast.parse(package_file("ddddocr", "charsets.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CHARSET_BETA":
            return tuple(ast.literal_eval(node.value))
    raise LookupError("ddddocr/charsets.py has no CHARSET_BETA")


@functools.cache
def _ppocr_charset() -> tuple[str, ...]:
    """PP-OCRv4 rec's dictionary: blank, the model's `character` metadata, space."""
    import onnx

    from bench.corpus.models.ocr import PPOCR_REC

    model = onnx.load(str(package_file(*PPOCR_REC)), load_external_data=False)
    chars = next(p.value for p in model.metadata_props if p.key == "character").splitlines()
    return ("", *chars, " ")


def ctc_greedy(indices: np.ndarray, charset, blank: int = 0) -> str:
    """Greedy CTC: collapse repeats, drop blanks, map to characters."""
    out, prev = [], -1
    for i in np.asarray(indices).tolist():
        if i != prev and i != blank and 0 <= i < len(charset):
            out.append(charset[i])
        prev = i
    return "".join(out)


def _exact(texts: list[str], labels, fold_case: bool) -> float:
    """Fraction of texts equal to the labels, ignoring white space (and case with `fold_case`)."""
    truth = decode_texts(labels)
    if len(truth) != len(texts):
        raise ValueError(f"{len(texts)} decoded texts for {len(truth)} labels")

    def norm(s: str) -> str:
        s = "".join(s.split())
        return s.lower() if fold_case else s

    return float(np.mean([norm(a) == norm(b) for a, b in zip(texts, truth, strict=True)]))


def ddddocr_exact(candidate, reference, labels) -> float:
    """Fraction of ddddocr readings equal to the rendered text (case-insensitive)."""
    n = len(labels)
    logits = np.asarray(candidate).reshape(n, -1, np.shape(candidate)[-1])
    charset = _ddddocr_charset()
    return _exact([ctc_greedy(row.argmax(-1), charset) for row in logits], labels, fold_case=True)


def ppocr_exact(candidate, reference, labels) -> float:
    """Fraction of PP-OCR readings equal to the rendered text."""
    charset = _ppocr_charset()
    return _exact([ctc_greedy(row.argmax(-1), charset) for row in np.asarray(candidate)], labels,
                  fold_case=False)


def mask_iou(candidate, reference, labels=None, threshold: float = 0.3) -> float:
    """Mean IoU of the thresholded probability maps (1 for an item where both are empty)."""
    c = np.asarray(candidate).reshape(len(candidate), -1) > threshold
    r = np.asarray(reference).reshape(len(reference), -1) > threshold
    inter, union = (c & r).sum(1), (c | r).sum(1)
    return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean())


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of `boxes`."""
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.45) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best first."""
    order, keep = np.argsort(-scores, kind="stable"), []
    while order.size:
        i = order[0]
        keep.append(i)
        order = order[1:][_iou(boxes[i], boxes[order[1:]]) < iou]
    return np.asarray(keep, dtype=np.int64)


def _yolox_boxes(pred: np.ndarray, threshold: float, size: int = 416) -> np.ndarray:
    """Decoded xyxy boxes of one YOLOX head output (K, 5 + classes) after score threshold and NMS."""
    grids, strides = [], []
    for s in (8, 16, 32):
        g = size // s
        yy, xx = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
        grids.append(np.stack([xx, yy], -1).reshape(-1, 2))
        strides.append(np.full((g * g, 1), s))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    xy = (pred[:, :2] + grid) * stride
    wh = np.exp(np.clip(pred[:, 2:4], -20, 20)) * stride
    score = pred[:, 4] * pred[:, 5:].max(1)
    ok = score > threshold
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)[ok]
    return boxes[nms(boxes, score[ok])] if len(boxes) else boxes


def box_f1(found: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> float:
    """F1 of `found` boxes greedily matched to `truth` boxes at IoU >= `iou` (1 when both are empty)."""
    if len(found) == 0 and len(truth) == 0:
        return 1.0
    if len(found) == 0 or len(truth) == 0:
        return 0.0
    free, hits = np.ones(len(truth), bool), 0
    for b in found:
        ious = np.where(free, _iou(b, truth), 0.0)
        j = int(ious.argmax())
        if ious[j] >= iou:
            free[j], hits = False, hits + 1
    return 2 * hits / (len(found) + len(truth))


def yolox_box_f1(candidate, reference, labels=None, threshold: float = 0.3) -> float:
    """Mean per-item F1 of the candidate's boxes against the reference's (ddddocr's detector)."""
    c, r = np.asarray(candidate), np.asarray(reference)
    return float(np.mean([box_f1(_yolox_boxes(a, threshold), _yolox_boxes(b, threshold))
                          for a, b in zip(c, r, strict=True)]))


def yolov8_scores_cosine(candidate, reference, labels=None) -> float:
    """Mean per-item cosine of the class scores (rows 4: of a YOLOv8 head) against the reference."""
    c = np.asarray(candidate, np.float64)[:, 4:].reshape(len(candidate), -1)
    r = np.asarray(reference, np.float64)[:, 4:].reshape(len(reference), -1)
    denom = np.linalg.norm(c, axis=1) * np.linalg.norm(r, axis=1)
    cos = np.where(denom > 0, (c * r).sum(1) / np.maximum(denom, 1e-300), 0.0)
    return float(np.nan_to_num(cos, nan=-1.0).mean())


def centred_cosine(candidate, reference, labels=None) -> float:
    """Mean per-item cosine of (candidate - m) and (reference - m), m the reference's mean over items."""
    c = np.asarray(candidate, np.float64).reshape(len(candidate), -1)
    r = np.asarray(reference, np.float64).reshape(len(reference), -1)
    mean = r.mean(0, keepdims=True)
    c, r = c - mean, r - mean
    denom = np.linalg.norm(c, axis=1) * np.linalg.norm(r, axis=1)
    cos = np.where(denom > 0, (c * r).sum(1) / np.maximum(denom, 1e-300), 0.0)
    return float(np.nan_to_num(cos, nan=-1.0).mean())
