"""Text recognisers that ship inside PyPI packages, on text the project renders with Pillow's own font.

- `ddddocr-ocr`: ddddocr's common.onnx (PyTorch export, opset 12: CNN + LSTM + CTC, 1x1x64xW, dynamic
  width), captcha-like strings (lower-case letters and digits, noise lines) at 64x256; metric: exact match
  of the greedy CTC reading with the rendered text, case-insensitive.
- `ppocr-rec`: rapidocr-onnxruntime's PP-OCRv4 recogniser (paddle2onnx, opset 12: CNN + SVTR transformer,
  Nx3x48xW with dynamic batch and width), words, numbers and punctuation at 48x320; metric: exact match.
Pillow's bundled FreeType font (`ImageFont.load_default(size)`) is on every machine with Pillow, so the data
is the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench.corpus.models import copy_model, encode_texts, save_npz

DDDDOCR = ("ddddocr", "common.onnx")
PPOCR_REC = ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx")
LABEL_LEN = 32

#: words the rendered lines are made of (no dictionary file needed)
WORDS = ("model", "speed", "invoice", "total", "order", "report", "hasten", "python", "linux", "tensor",
         "batch", "kernel", "vector", "matrix", "cache", "server", "client", "token", "input", "output",
         "Paris", "Berlin", "London", "Tokyo", "Madrid", "Oslo", "Delhi", "Lima", "Cairo", "Quito",
         "DATA", "TEST", "CODE", "NOTE", "PAGE", "ITEM", "SALE", "FREE", "OPEN", "SHOP")


def _font(size: int):
    return ImageFont.load_default(size=size)


def _captcha_text(rng) -> str:
    alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
    return "".join(rng.choice(list(alphabet), size=int(rng.integers(4, 7))))


def render_captcha(text: str, rng, width: int = 256, height: int = 64) -> np.ndarray:
    """A grey 1xHxW image in [0, 1] of `text` with light noise lines (ddddocr's input layout)."""
    im = Image.new("L", (width, height), int(rng.integers(215, 256)))
    draw = ImageDraw.Draw(im)
    for _ in range(3):
        pts = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
        draw.line(pts, fill=int(rng.integers(120, 200)), width=1)
    font = _font(int(rng.integers(36, 44)))
    x = int(rng.integers(4, max(5, width - font.getlength(text) - 4)))
    draw.text((x, int(rng.integers(2, 10))), text, fill=int(rng.integers(0, 60)), font=font)
    return (np.asarray(im, np.float32) / 255.0)[None]


def _line_text(rng) -> str:
    kind = int(rng.integers(0, 4))
    w = lambda: str(rng.choice(WORDS))  # noqa: E731
    if kind == 0:
        return f"{w()} {int(rng.integers(1, 9999))}"
    if kind == 1:
        return f"{w()} {w()}"
    if kind == 2:
        return f"{int(rng.integers(1, 31)):02d}-{int(rng.integers(1, 13)):02d}-20{int(rng.integers(10, 30))}"
    return f"{w()}: {rng.integers(1, 999)}.{rng.integers(0, 99):02d}"


def render_line(text: str, rng, width: int = 320, height: int = 48) -> np.ndarray:
    """An RGB 3xHxW image of `text`, normalised as PP-OCR does ((x / 255 - 0.5) / 0.5)."""
    bg = tuple(int(v) for v in rng.integers(200, 256, size=3))
    fg = tuple(int(v) for v in rng.integers(0, 70, size=3))
    im = Image.new("RGB", (width, height), bg)
    font = _font(int(rng.integers(24, 31)))
    room = max(1, int(width - font.getlength(text) - 4))
    ImageDraw.Draw(im).text((int(rng.integers(2, min(room, 40) + 2)), int(rng.integers(4, 12))), text,
                            fill=fg, font=font)
    x = np.asarray(im, np.float32) / 255.0
    x = x + rng.normal(0, 0.02, size=x.shape).astype(np.float32)
    return ((np.clip(x, 0, 1) - 0.5) / 0.5).transpose(2, 0, 1).astype(np.float32)


def _write(folder: Path, name: str, make, n_calib: int, n_eval: int, seed: int) -> None:
    """Render n_calib + n_eval items (different seeds: disjoint sets) into calib.npz / eval.npz."""
    for split, n, s in (("calib", n_calib, seed), ("eval", n_eval, seed + 1)):
        rng = np.random.default_rng(s)
        images, texts = zip(*(make(rng) for _ in range(n)), strict=True)
        save_npz(folder / f"{split}.npz", {name: np.stack(images)}, encode_texts(list(texts), LABEL_LEN))


def build_ddddocr(folder: Path, small: bool) -> dict:
    def make(rng):
        text = _captcha_text(rng)
        return render_captcha(text, rng), text

    n_calib, n_eval = (16, 24) if small else (64, 200)
    _write(folder, "input1", make, n_calib, n_eval, seed=10)
    copy_model(folder, DDDDOCR)
    return {"source": "PyPI ddddocr 1.6.1 common.onnx (PyTorch export, opset 12, CNN + LSTM)",
            "shape": [1, 1, 64, 256], "n_calib": n_calib, "n_eval": n_eval}


def build_ppocr_rec(folder: Path, small: bool) -> dict:
    def make(rng):
        text = _line_text(rng)
        return render_line(text, rng), text

    n_calib, n_eval = (16, 24) if small else (64, 200)
    _write(folder, "x", make, n_calib, n_eval, seed=20)
    copy_model(folder, PPOCR_REC)
    return {"source": "PyPI rapidocr-onnxruntime 1.4.4 ch_PP-OCRv4_rec (paddle2onnx, opset 12, CNN + SVTR)",
            "shape": [1, 3, 48, 320], "n_calib": n_calib, "n_eval": n_eval}


def entries() -> list:
    from bench.corpus import Entry

    return [
        Entry("ddddocr-ocr", "packaged", build_ddddocr, metric="bench.corpus.metrics:ddddocr_exact",
              max_drop=0.02, description="ddddocr CNN + LSTM captcha reader on rendered strings, exact match"),
        Entry("ppocr-rec", "packaged", build_ppocr_rec, metric="bench.corpus.metrics:ppocr_exact",
              max_drop=0.02, transformer=True,
              description="PP-OCRv4 CNN + SVTR line recogniser on rendered text lines, exact match"),
    ]
