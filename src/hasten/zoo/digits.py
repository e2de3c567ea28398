"""`zoo:digits`: a small CNN trained here, in seconds on CPU, on scikit-learn's bundled 8x8 digits.

Data: `sklearn.datasets.load_digits` (1,797 images, shipped inside scikit-learn), pixels scaled from 0..16
to [0, 1], shaped [N, 1, 8, 8] float32. A permutation seeded with `SEED` splits it once: the last
`EVAL_SIZE` images are the held-out evaluation split, the rest train the network; calibration is the first
`CALIBRATION_SIZE` training images (so calibration and evaluation are disjoint).

Network: three 3x3 conv layers (32, 64, 64 channels) each with BatchNorm and ReLU, a 2x2 max-pool after the
second, global average pooling and a Linear classifier; ONNX input "image" [batch, 1, 8, 8], output
"logits" [batch, 10]. Training is deterministic (fixed seeds, one thread, full-batch order from a seeded
generator). The trained weights are cached as safetensors and the export as ONNX under
`cache_dir()/zoo/`, keyed by a hash of the code version and the torch / scikit-learn versions.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from hasten.errors import ModelLoadError
from hasten.fileio import atomic_path
from hasten.paths import cache_dir, package_version

SEED = 0
EVAL_SIZE = 360
CALIBRATION_SIZE = 256
EPOCHS = 12
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
#: Bump when the network, the data split or the training changes, so stale caches are not reused.
CODE_VERSION = "digits-1"


def cache_key() -> str:
    """Short hash of everything that changes the trained network."""
    torch_v, sklearn_v = package_version("torch"), package_version("scikit-learn")
    text = f"{CODE_VERSION}|torch={torch_v or 'none'}|sklearn={sklearn_v or 'none'}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _paths() -> tuple[Path, Path]:
    folder = cache_dir() / "zoo"
    key = cache_key()
    return folder / f"digits-{key}.onnx", folder / f"digits-{key}.safetensors"


def split_indices(n: int = 1797) -> dict[str, np.ndarray]:
    """Row indices of each split into the `n` digits images (a seeded permutation)."""
    order = np.random.default_rng(SEED).permutation(n)
    train = order[:-EVAL_SIZE]
    return {"train": train, "calibration": train[:CALIBRATION_SIZE], "evaluation": order[-EVAL_SIZE:]}


def dataset() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train", "calibration", "evaluation"} -> (images [N,1,8,8] float32 in [0,1], labels [N] int64)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (np.asarray(data.images, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    labels = np.asarray(data.target, dtype=np.int64)
    return {split: (images[idx], labels[idx]) for split, idx in split_indices(len(labels)).items()}


def build_network():
    """The untrained CNN (a torch.nn.Sequential)."""
    from torch import nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(1, 32), *block(32, 64), nn.MaxPool2d(2), *block(64, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def train_network():
    """Train the CNN deterministically on the training split; returns the module in eval mode."""
    import torch

    images, labels = dataset()["train"]
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(SEED)
        net = build_network()
        opt = torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
        steps = EPOCHS * ((len(y) + BATCH_SIZE - 1) // BATCH_SIZE)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LEARNING_RATE, total_steps=steps)
        gen = torch.Generator().manual_seed(SEED)
        net.train()
        for _ in range(EPOCHS):
            perm = torch.randperm(len(y), generator=gen)
            for start in range(0, len(y), BATCH_SIZE):
                idx = perm[start:start + BATCH_SIZE]
                batch = x[idx]
                # light augmentation: shift by up to one pixel (digits are not always centred)
                dx, dy = torch.randint(-1, 2, (2,), generator=gen).tolist()
                batch = torch.roll(batch, shifts=(dy, dx), dims=(2, 3))
                loss = torch.nn.functional.cross_entropy(net(batch), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def torch_network():
    """The trained network (weights from the safetensors cache, else trained now and cached)."""
    from safetensors.torch import load_file, save_file

    _, weights = _paths()
    net = build_network()
    if weights.exists():
        try:
            net.load_state_dict(load_file(str(weights)))
            return net.eval()
        except Exception:  # a damaged or foreign cache file: train again and overwrite it
            pass
    net = train_network()
    with atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    return net


def example_inputs(n: int = 2) -> dict:
    import torch

    return {"image": torch.from_numpy(dataset()["calibration"][0][:n].copy())}


def onnx_model():
    """The trained network as a Model (cached ONNX file; exported on first use)."""
    from hasten.model import load_onnx

    path, _ = _paths()
    if path.exists():
        try:
            return load_onnx(path)
        except ModelLoadError:  # a damaged cache file: export again
            pass
    from hasten.torch_export import from_torch

    net = torch_network()
    model = from_torch(net, example_inputs(), input_names=["image"], output_names=["logits"],
                       dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    model.save(path)
    return load_onnx(path)
