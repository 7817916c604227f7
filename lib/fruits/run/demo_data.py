"""Generate the small synthetic image set the demo runs on.

Fruits-360 cannot be downloaded everywhere (and is large), so the demo draws its
own 100x100 "fruit-like" pictures: shaded shapes of a class-specific colour and
form on a white background, with random position, size, rotation and lighting.
They are plainly synthetic; the report says so. Generation is deterministic for a
given seed, so two demo runs see the same pixels.

The demo also gets a labelled training split (:func:`generate_demo_training_images`,
drawn with another seed, so no picture is in both), so a demo run scores its features
with the classifier and the report shows every section, the evaluation included.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

#: File written at the root of the generated set; its presence marks a complete set.
MARKER = "SYNTHETIC-DATA.txt"

IMAGE_SIDE = 100

#: Images per class of the demo set (``fruits run`` without an input), for each of :data:`CLASSES`.
DEMO_PER_CLASS = 30

#: Seed offset of the training split: its pictures differ from the run's own.
TRAINING_SEED_OFFSET = 1_000


@dataclasses.dataclass(frozen=True)
class FruitStyle:
    """How one synthetic class is drawn."""

    name: str
    colour: tuple[int, int, int]
    aspect: float  # height / width of the body
    radius: float  # body radius as a fraction of the image side
    blobs: int = 1  # several small bodies make a cluster (grapes)
    stem: bool = False
    speckles: bool = False


CLASSES = (
    FruitStyle("Synthetic Apple", (200, 30, 40), 0.95, 0.36, stem=True),
    FruitStyle("Synthetic Banana", (235, 205, 40), 0.35, 0.45),
    FruitStyle("Synthetic Lime", (90, 170, 40), 0.9, 0.27),
    FruitStyle("Synthetic Orange", (245, 140, 20), 1.0, 0.38, speckles=True),
    FruitStyle("Synthetic Grape", (90, 40, 110), 1.0, 0.11, blobs=9),
    FruitStyle("Synthetic Kiwi", (130, 95, 55), 0.8, 0.33, speckles=True),
)


def draw_fruit(style: FruitStyle, rng: np.random.Generator) -> Image.Image:
    """Draw one 100x100 RGB picture of ``style`` with random pose and lighting."""
    side = IMAGE_SIDE
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    light = rng.uniform(0.8, 1.15)
    centre = side / 2 + rng.uniform(-8, 8, size=2)
    radius = style.radius * side * rng.uniform(0.85, 1.1)
    for index in range(style.blobs):
        if style.blobs > 1:
            angle = 2 * math.pi * index / style.blobs + rng.uniform(-0.2, 0.2)
            ring = side * 0.18 * (index % 3 + 1) / 3
            cx, cy = centre + ring * np.array([math.cos(angle), math.sin(angle)])
        else:
            cx, cy = centre
        _shaded_ellipse(draw, (cx, cy), radius, style.aspect, style.colour, light, rng)
    if style.speckles:
        for _ in range(40):
            x, y = centre + rng.normal(0, radius / 2.5, size=2)
            shade = tuple(int(c * 0.6) for c in style.colour)
            draw.point((float(x), float(y)), fill=shade)
    if style.stem:
        top = centre[1] - radius * style.aspect
        draw.line([(centre[0], top + 4), (centre[0] + 3, top - 8)], fill=(90, 60, 20), width=3)
    angle = float(rng.uniform(-35, 35))
    canvas = canvas.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))
    return canvas.filter(ImageFilter.GaussianBlur(radius=0.6))


def _shaded_ellipse(draw, centre, radius, aspect, colour, light, rng) -> None:
    """Concentric ellipses from dark rim to bright centre fake a lit, round body."""
    steps = 12
    for step in range(steps):
        scale = 1 - step / steps
        brightness = light * (0.65 + 0.45 * step / steps)
        fill = tuple(int(min(255, c * brightness + 20 * step / steps)) for c in colour)
        rx, ry = radius * scale, radius * aspect * scale
        offset = step * radius * 0.02
        box = [centre[0] - rx - offset, centre[1] - ry - offset, centre[0] + rx - offset, centre[1] + ry - offset]
        draw.ellipse(box, fill=fill)


def generate_demo_images(
    target: Path, *, per_class: int = DEMO_PER_CLASS, seed: int = 0, classes: tuple[FruitStyle, ...] = CLASSES
) -> Path:
    """Write ``per_class`` JPEGs for each synthetic class under ``target/<class>/``.

    Parameters
    ----------
    target : pathlib.Path
        Folder to fill; an existing complete set (marker file present) is kept as is.
    per_class : int
        Images per class.
    seed : int
        Seed of the drawing; the same seed gives the same pixels.

    Returns
    -------
    pathlib.Path
        ``target``, ready to be used as ``input_path``.
    """
    target = Path(target)
    marker = target / MARKER
    if marker.exists():
        return target
    rng = np.random.default_rng(seed)
    for style in classes:
        folder = target / style.name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            draw_fruit(style, rng).save(folder / f"{index:03d}_100.jpg", quality=92)
    marker.write_text(
        "Synthetic, generated images for the fruits-emr demo: not photographs, not Fruits-360.\n"
        f"{len(classes)} classes x {per_class} images, seed {seed}.\n"
    )
    return target


def demo_training_dir(images: Path) -> Path:
    """Where the training split of the demo set in ``images`` lives: a sibling folder, never inside it
    (a folder inside the input would be read as one more class)."""
    images = Path(images)
    return images.with_name(f"{images.name}-training")


def generate_demo_training_images(images: Path, *, per_class: int = 20, seed: int = 0,
                                  classes: tuple[FruitStyle, ...] = CLASSES) -> Path:
    """Write the demo's labelled training split beside ``images`` (see :func:`demo_training_dir`).

    Same classes and drawing as :func:`generate_demo_images`, another seed: the classifier
    the demo evaluates is fitted on pictures it is not scored on.

    Returns
    -------
    pathlib.Path
        The training folder, ready to be used as ``train_path``.
    """
    return generate_demo_images(demo_training_dir(images), per_class=per_class,
                                seed=seed + TRAINING_SEED_OFFSET, classes=classes)
