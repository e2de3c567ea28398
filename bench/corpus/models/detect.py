"""Detectors that ship inside PyPI packages, on scenes the project renders with Pillow (fidelity metrics).

- `ddddocr-det`: ddddocr's common_det.onnx (YOLOX-style, PyTorch export, opset 11, fixed 1x3x416x416, raw
  0-255 BGR input) on scattered glyphs over textured backgrounds (click-captcha scenes); metric: F1 of the
  decoded boxes against the fp32 model's (`bench.corpus.metrics:yolox_box_f1`).
- `nudenet`: nudenet's 320n.onnx (YOLOv8n, PyTorch export, opset 17, dynamic batch and spatial dims, RGB
  in [0, 1]) on rendered scenes of shapes, gradients and skin-tone blobs; metric: cosine of the class scores
  against the fp32 model's (`yolov8_scores_cosine`: the scenes have no ground truth).
- `ppocr-det`: rapidocr-onnxruntime's PP-OCRv4 DB text detector (paddle2onnx, opset 12, dynamic batch and
  spatial dims, ImageNet-normalised RGB) on pages of rendered text lines at 256x384; metric: IoU of the
  p > 0.3 text masks against the fp32 model's (`mask_iou`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from bench.corpus.models import copy_model, save_npz
from bench.corpus.models.ocr import WORDS

DDDDOCR_DET = ("ddddocr", "common_det.onnx")
NUDENET = ("nudenet", "320n.onnx")
PPOCR_DET = ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _background(rng, width: int, height: int) -> Image.Image:
    """A smooth colour gradient with blurred noise: a textured, photo-like backdrop."""
    a, b = rng.integers(60, 230, size=3), rng.integers(60, 230, size=3)
    t = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    s = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    img = a * (1 - t) * (1 - s / 2) + b * t * (0.5 + s / 2)
    img = img + rng.normal(0, 18, size=(height, width, 3))
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    return im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 2.0))))


def _shapes(draw: ImageDraw.ImageDraw, rng, width: int, height: int, n: int, palette=None) -> None:
    for _ in range(n):
        x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        x1 = x0 + int(rng.integers(15, width // 2))
        y1 = y0 + int(rng.integers(15, height // 2))
        colour = tuple(int(v) for v in (palette(rng) if palette else rng.integers(0, 256, size=3)))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(2, 8)))


def glyph_scene(rng, size: int = 416) -> np.ndarray:
    """3 to 6 large glyphs scattered on a textured backdrop, as a 3xHxW float32 BGR array in [0, 255]."""
    im = _background(rng, size, size)
    draw = ImageDraw.Draw(im)
    _shapes(draw, rng, size, size, int(rng.integers(1, 4)))
    glyphs = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789@#&%"
    for _ in range(int(rng.integers(3, 7))):
        font = ImageFont.load_default(size=int(rng.integers(40, 72)))
        pos = (int(rng.integers(0, size - 70)), int(rng.integers(0, size - 80)))
        draw.text(pos, str(rng.choice(list(glyphs))), fill=tuple(int(v) for v in rng.integers(0, 120, size=3)),
                  font=font, stroke_width=int(rng.integers(0, 3)), stroke_fill=(255, 255, 255))
    return np.asarray(im, np.float32)[:, :, ::-1].transpose(2, 0, 1).copy()


def _skin(rng):
    base = np.array([224, 172, 140]) * rng.uniform(0.45, 1.1)
    return np.clip(base + rng.normal(0, 10, size=3), 0, 255)


def blob_scene(rng, size: int = 320) -> np.ndarray:
    """Gradients, shapes and blurred skin-tone blobs, as a 3xHxW float32 RGB array in [0, 1]."""
    im = _background(rng, size, size)
    draw = ImageDraw.Draw(im)
    _shapes(draw, rng, size, size, int(rng.integers(2, 6)))
    _shapes(draw, rng, size, size, int(rng.integers(1, 4)), palette=_skin)
    im = im.filter(ImageFilter.GaussianBlur(radius=1.5))
    return (np.asarray(im, np.float32) / 255.0).transpose(2, 0, 1).copy()


def text_page(rng, height: int = 256, width: int = 384) -> np.ndarray:
    """2 to 5 rendered text lines on a light backdrop with shapes, ImageNet-normalised 3xHxW RGB."""
    im = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(200, 256, size=3)))
    draw = ImageDraw.Draw(im)
    _shapes(draw, rng, width, height, int(rng.integers(0, 3)),
            palette=lambda r: r.integers(150, 256, size=3))
    y = int(rng.integers(4, 30))
    for _ in range(int(rng.integers(2, 6))):
        font = ImageFont.load_default(size=int(rng.integers(18, 34)))
        text = " ".join(str(rng.choice(WORDS)) for _ in range(int(rng.integers(1, 4))))
        draw.text((int(rng.integers(4, 80)), y), text, fill=tuple(int(v) for v in rng.integers(0, 80, size=3)),
                  font=font)
        y += int(font.size * rng.uniform(1.3, 2.0))
        if y > height - 30:
            break
    x = np.asarray(im, np.float32) / 255.0
    return ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).astype(np.float32)


def _write(folder: Path, name: str, make, n_calib: int, n_eval: int, seed: int) -> None:
    for split, n, s in (("calib", n_calib, seed), ("eval", n_eval, seed + 1)):
        rng = np.random.default_rng(s)
        save_npz(folder / f"{split}.npz", {name: np.stack([make(rng) for _ in range(n)])})


def build_ddddocr_det(folder: Path, small: bool) -> dict:
    n_calib, n_eval = (8, 12) if small else (48, 100)
    _write(folder, "images", glyph_scene, n_calib, n_eval, seed=30)
    copy_model(folder, DDDDOCR_DET)
    return {"source": "PyPI ddddocr 1.6.1 common_det.onnx (YOLOX-style, PyTorch export, opset 11)",
            "shape": [1, 3, 416, 416], "n_calib": n_calib, "n_eval": n_eval}


def build_nudenet(folder: Path, small: bool) -> dict:
    n_calib, n_eval = (8, 12) if small else (48, 100)
    _write(folder, "images", blob_scene, n_calib, n_eval, seed=40)
    copy_model(folder, NUDENET)
    return {"source": "PyPI nudenet 3.4.2 320n.onnx (YOLOv8n, PyTorch export, opset 17, dynamic dims)",
            "shape": [1, 3, 320, 320], "n_calib": n_calib, "n_eval": n_eval}


def build_ppocr_det(folder: Path, small: bool) -> dict:
    n_calib, n_eval = (8, 12) if small else (48, 100)
    _write(folder, "x", text_page, n_calib, n_eval, seed=50)
    copy_model(folder, PPOCR_DET)
    return {"source": "PyPI rapidocr-onnxruntime 1.4.4 ch_PP-OCRv4_det (paddle2onnx, opset 12, DB head)",
            "shape": [1, 3, 256, 384], "n_calib": n_calib, "n_eval": n_eval}


def entries() -> list:
    from bench.corpus import Entry

    return [
        Entry("ddddocr-det", "packaged", build_ddddocr_det, metric="bench.corpus.metrics:yolox_box_f1",
              max_drop=0.02, description="ddddocr YOLOX glyph detector on rendered scenes, box F1 vs fp32"),
        Entry("nudenet", "packaged", build_nudenet, metric="bench.corpus.metrics:yolov8_scores_cosine",
              max_drop=0.01, description="nudenet YOLOv8n on rendered scenes, class-score cosine vs fp32"),
        Entry("ppocr-det", "packaged", build_ppocr_det, metric="bench.corpus.metrics:mask_iou",
              max_drop=0.02, description="PP-OCRv4 DB text detector on rendered pages, text-mask IoU vs fp32"),
    ]
