"""Seeded NEU-DET-like synthetic data: 200x200 grayscale steel texture, six defect kinds.

Each kind has its own look so a small detector learns them in minutes on a CPU:
crazing (a web of thin dark cracks), inclusion (dark elongated blobs), patches (large smooth
bright areas), pitted_surface (clusters of small dark pits), rolled-in_scale (short bright
flakes along the rolling direction), scratches (one long thin bright line). Boxes are the tight
bounds of what was drawn. Like NEU-DET, an image is named after its main class and now and then
holds a defect of another class too. Written in NEU-DET's VOC layout (IMAGES/, ANNOTATIONS/).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
Rng = np.random.Generator


def _crazing(rng: Rng, d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    for _ in range(int(rng.integers(8, 16))):
        pts = [(rng.uniform(0, w), rng.uniform(0, h))]
        for _ in range(int(rng.integers(3, 6))):
            x, y = pts[-1]
            pts.append(
                (float(np.clip(x + rng.normal(0, w / 5), 0, w - 1)), float(np.clip(y + rng.normal(0, h / 5), 0, h - 1)))
            )
        d.line(pts, fill=255, width=2)


def _inclusion(rng: Rng, d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    for _ in range(int(rng.integers(1, 3))):
        ew, eh = rng.uniform(0.5, 1.0) * w, rng.uniform(0.4, 1.0) * h
        x, y = rng.uniform(0, w - ew), rng.uniform(0, h - eh)
        d.ellipse([x, y, x + ew - 1, y + eh - 1], fill=255)


def _patches(rng: Rng, d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    d.ellipse([w * 0.1, h * 0.1, w * 0.9, h * 0.9], fill=255)
    for _ in range(int(rng.integers(3, 6))):
        r = rng.uniform(0.15, 0.3) * min(w, h)
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)


def _pitted(rng: Rng, d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    for _ in range(int(rng.integers(25, 60))):
        r = rng.uniform(1.0, 3.0)
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)


def _scale(rng: Rng, d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    for _ in range(int(rng.integers(15, 40))):
        ln = rng.uniform(4, 14)
        x, y = rng.uniform(0, w - ln), rng.uniform(1, h - 2)
        d.line([(x, y), (x + ln, y + rng.uniform(-1, 1))], fill=255, width=2)


def _scratch(rng: Rng, d: ImageDraw.ImageDraw, w: int, h: int) -> None:
    if h >= w:  # along the long side, with a little drift
        d.line([(rng.uniform(0, w), 0), (rng.uniform(0, w), h - 1)], fill=255, width=3)
    else:
        d.line([(0, rng.uniform(0, h)), (w - 1, rng.uniform(0, h))], fill=255, width=3)


# kind -> (drawer, contrast added where drawn, (min, max) box width, (min, max) box height, blur)
KINDS: dict[str, tuple[Callable, float, tuple[int, int], tuple[int, int], float]] = {
    "crazing": (_crazing, -55.0, (50, 150), (50, 150), 0.0),
    "inclusion": (_inclusion, -75.0, (30, 100), (12, 40), 0.6),
    "patches": (_patches, 55.0, (40, 130), (40, 130), 3.0),
    "pitted_surface": (_pitted, -65.0, (40, 110), (40, 110), 0.0),
    "rolled-in_scale": (_scale, 60.0, (50, 160), (30, 100), 0.0),
    "scratches": (_scratch, 90.0, (10, 40), (80, 190), 0.0),
}


def steel_background(rng: Rng, size: int) -> np.ndarray:
    """Gray level with rolling streaks along rows and fine grain."""
    rows = np.convolve(rng.normal(0, 10, size + 16), np.ones(9) / 9, mode="same")[8:-8]
    cols = np.convolve(rng.normal(0, 3, size + 16), np.ones(5) / 5, mode="same")[8:-8]
    return rng.uniform(105, 145) + rows[:, None] + cols[None, :] + rng.normal(0, 5, (size, size))


def draw_defect(rng: Rng, img: np.ndarray, kind: str, taken: list[list[int]]) -> list[int] | None:
    """Draw one defect where it overlaps no earlier box much; return its tight xyxy box."""
    drawer, contrast, (w0, w1), (h0, h1), blur = KINDS[kind]
    size = img.shape[0]
    if kind == "scratches" and rng.random() < 0.5:  # horizontal scratches too
        (w0, w1), (h0, h1) = (h0, h1), (w0, w1)
    for _ in range(30):
        w, h = int(rng.integers(w0, min(w1, size) + 1)), int(rng.integers(h0, min(h1, size) + 1))
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        if all(_iou([x, y, x + w, y + h], t) < 0.1 for t in taken):
            break
    else:
        return None
    canvas = Image.new("L", (w, h), 0)
    drawer(rng, ImageDraw.Draw(canvas), w, h)
    if blur:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    mask = np.asarray(canvas, dtype=np.float64) / 255.0
    ys, xs = np.nonzero(mask > 0.25)
    if len(xs) == 0:
        return None
    img[y : y + h, x : x + w] += contrast * mask
    return [x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1]


def synthetic_image(
    rng: Rng, main: str, size: int = 200, extra_prob: float = 0.1
) -> tuple[np.ndarray, list[tuple[str, list[int]]]]:
    """One image: mostly one defect of ``main`` (1: 60%, 2: 30%, 3: 10%, as in NEU-DET most
    images hold one), sometimes one of another kind."""
    img = steel_background(rng, size)
    kinds = [main] * int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    if rng.random() < extra_prob:
        kinds.append(str(rng.choice([c for c in CLASSES if c != main])))
    objs: list[tuple[str, list[int]]] = []
    for kind in kinds:
        box = draw_defect(rng, img, kind, [b for _, b in objs])
        if box is not None:
            objs.append((kind, box))
    return np.clip(img, 0, 255).astype(np.uint8), objs


def voc_xml(file_name: str, size: int, objs: list[tuple[str, list[int]]]) -> str:
    obj_xml = "".join(
        f"\t<object>\n\t\t<name>{n}</name>\n\t\t<pose>Unspecified</pose>\n"
        "\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n"
        f"\t\t<bndbox>\n\t\t\t<xmin>{b[0]}</xmin>\n\t\t\t<ymin>{b[1]}</ymin>\n"
        f"\t\t\t<xmax>{b[2]}</xmax>\n\t\t\t<ymax>{b[3]}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for n, b in objs
    )
    return (
        f"<annotation>\n\t<folder>synthetic</folder>\n\t<filename>{file_name}</filename>\n"
        "\t<source>\n\t\t<database>dkan-synthetic</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{size}</width>\n\t\t<height>{size}</height>\n\t\t<depth>1</depth>\n\t</size>\n"
        f"\t<segmented>0</segmented>\n{obj_xml}</annotation>\n"
    )


def generate_synthetic(out: Path, per_class: int = 60, seed: int = 0, size: int = 200) -> Path:
    """Write ``per_class`` images per class (``<class>_<n>.jpg`` + VOC XML) under ``out``."""
    out = Path(out)
    (out / "IMAGES").mkdir(parents=True, exist_ok=True)
    (out / "ANNOTATIONS").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for main in CLASSES:
        for n in range(1, per_class + 1):
            img, objs = synthetic_image(rng, main, size)
            stem = f"{main}_{n}"
            Image.fromarray(img).convert("RGB").save(out / "IMAGES" / f"{stem}.jpg", quality=92)
            (out / "ANNOTATIONS" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", size, objs))
    return out


def _iou(a: list[int], b: list[int]) -> float:
    iw, ih = max(0, min(a[2], b[2]) - max(a[0], b[0])), max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# --- A second synthetic set, shaped unlike NEU-DET -------------------------------------------
# "tiles": large grayscale PNGs (640 px by default; one channel on disk), five to ten small
# defects per image of six kinds with their own names, and about one image in eight defect-free.
# Image names say nothing about their content (tile_0001.png), as in most inspection data.

TILE_CLASSES = ("pit", "burr", "stain", "crack", "dent", "void")
# kind -> (contrast, (min, max) side in px at 640 px)
TILE_KINDS: dict[str, tuple[float, tuple[int, int]]] = {
    "pit": (-70.0, (8, 16)),
    "burr": (65.0, (10, 24)),
    "stain": (-35.0, (20, 48)),
    "crack": (-60.0, (16, 56)),
    "dent": (40.0, (14, 32)),
    "void": (-90.0, (10, 20)),
}


def _draw_tile_defect(rng: Rng, d: ImageDraw.ImageDraw, kind: str, w: int, h: int) -> None:
    if kind in ("pit", "void"):
        d.ellipse([0, 0, w - 1, h - 1], fill=255 if kind == "void" else 200)
    elif kind == "burr":  # a short jagged spike
        d.line([(0, h - 1), (w * 0.4, h * 0.3), (w * 0.6, h * 0.6), (w - 1, 0)], fill=255, width=2)
    elif kind == "stain":
        d.ellipse([0, h * 0.2, w - 1, h * 0.8], fill=160)
        d.ellipse([w * 0.3, 0, w * 0.8, h - 1], fill=160)
    elif kind == "crack":
        pts = [(0.0, float(rng.uniform(0, h)))]
        for x in np.linspace(w / 4, w - 1, 4):
            pts.append((float(x), float(np.clip(pts[-1][1] + rng.normal(0, h / 4), 0, h - 1))))
        d.line(pts, fill=255, width=2)
    else:  # dent: a ring
        d.ellipse([0, 0, w - 1, h - 1], outline=255, width=3)


def tile_image(rng: Rng, size: int = 640, empty_prob: float = 0.12) -> tuple[np.ndarray, list[tuple[str, list[int]]]]:
    """One tile: a smooth gradient with grain, and 5-10 small defects (or none, with ``empty_prob``)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = (
        rng.uniform(90, 150) + 25 * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) + rng.normal(0, 6, (size, size))
    )
    objs: list[tuple[str, list[int]]] = []
    if rng.random() < empty_prob:
        return np.clip(img, 0, 255).astype(np.uint8), objs
    scale = size / 640
    for _ in range(int(rng.integers(5, 11))):
        kind = str(rng.choice(TILE_CLASSES))
        contrast, (s0, s1) = TILE_KINDS[kind]
        w, h = (max(4, int(rng.integers(s0, s1 + 1) * scale)) for _ in range(2))
        for _ in range(30):
            x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            if all(_iou([x, y, x + w, y + h], b) == 0 for _, b in objs):
                break
        else:
            continue
        canvas = Image.new("L", (w, h), 0)
        _draw_tile_defect(rng, ImageDraw.Draw(canvas), kind, w, h)
        mask = np.asarray(canvas, dtype=np.float64) / 255.0
        ys, xs = np.nonzero(mask > 0.25)
        if len(xs) == 0:
            continue
        img[y : y + h, x : x + w] += contrast * mask
        objs.append((kind, [x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1]))
    return np.clip(img, 0, 255).astype(np.uint8), objs


def generate_tiles(out: Path, images: int = 120, seed: int = 0, size: int = 640) -> Path:
    """Write ``images`` grayscale tiles (``tile_<n>.png`` + VOC XML) under ``out``."""
    out = Path(out)
    (out / "IMAGES").mkdir(parents=True, exist_ok=True)
    (out / "ANNOTATIONS").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for n in range(1, images + 1):
        img, objs = tile_image(rng, size)
        stem = f"tile_{n:04d}"
        Image.fromarray(img, mode="L").save(out / "IMAGES" / f"{stem}.png")
        (out / "ANNOTATIONS" / f"{stem}.xml").write_text(voc_xml(f"{stem}.png", size, objs))
    return out
