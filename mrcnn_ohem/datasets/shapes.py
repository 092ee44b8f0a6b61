"""A synthetic instance-segmentation dataset with hard negatives, drawn with NumPy and scikit-image.

Every image holds one to ``max_targets`` *target* shapes -- the labelled classes ``square``,
``circle`` and ``triangle`` -- and one to ``max_distractors`` *distractors*: unlabelled shapes built
to look almost like a target (rounded squares, ellipses, hollow outlines, half discs,
trapezoids), painted with the same colour distribution, on a textured background (noise,
gradient or stripes). A detector that only learns "a blob of colour" fires on the distractors,
which makes them hard negatives for the RPN: the examples OHEM is meant to find.

Generation is deterministic: image ``index`` of seed ``seed`` is drawn from
``numpy.random.default_rng([seed, index])``, so it does not depend on how many images are
loaded. Shapes never overlap (their circumscribed circles are kept apart), so an instance mask is
exactly the shape's pixels.

The same scenes can be written to disk as a COCO-format folder (:func:`write_coco_folder`) and
read back with :class:`mrcnn_ohem.datasets.coco.CocoDataset`, which exercises the COCO path end to
end without downloading anything. (The idea of a generated shapes dataset comes from Matterport's
``samples/shapes``; this generator, its distractors and textures are our own.)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import skimage.draw
import skimage.io
import skimage.measure
from pycocotools import mask as mask_utils

from mrcnn_ohem.maskrcnn import utils

SOURCE = "shapes"
#: The labelled classes; class id ``i + 1`` (and COCO category id ``i + 1``) is ``CLASS_NAMES[i]``.
CLASS_NAMES = ("square", "circle", "triangle")
#: Unlabelled look-alikes; each is a near miss of at least one target class.
DISTRACTOR_KINDS = (
    "rounded_square",  # square with strongly rounded corners: between square and circle
    "ellipse",  # elongated circle (axis ratio 1.5-2)
    "hollow_square",  # outline only
    "hollow_circle",  # ring
    "hollow_triangle",  # outline only
    "half_disc",  # a circle cut in half
    "trapezoid",  # a triangle with its apex cut off
)
BACKGROUND_KINDS = ("noise", "gradient", "stripes")


############################################################
#  Scene description
############################################################


@dataclass(frozen=True)
class ShapeSpec:
    """One shape of a scene.

    Attributes:
        kind: a name from ``CLASS_NAMES`` (labelled) or ``DISTRACTOR_KINDS`` (unlabelled).
        center: (y, x) in pixels.
        radius: circumradius in pixels: the shape lies inside the circle of this radius.
        angle: rotation in radians.
        color: RGB in 0..255.
        aspect: ellipse axis ratio, rounded-corner fraction or inner-size fraction, by kind.
    """

    kind: str
    center: tuple[float, float]
    radius: float
    angle: float
    color: tuple[int, int, int]
    aspect: float = 1.0

    @property
    def is_target(self) -> bool:
        """Whether this shape is a labelled instance."""
        return self.kind in CLASS_NAMES


@dataclass(frozen=True)
class SceneSpec:
    """Everything needed to render one image deterministically."""

    height: int
    width: int
    background: str
    background_colors: tuple[tuple[int, int, int], tuple[int, int, int]]
    background_angle: float
    background_period: float
    shapes: tuple[ShapeSpec, ...]
    noise_seed: int

    @property
    def targets(self) -> tuple[ShapeSpec, ...]:
        """The labelled shapes, in drawing order."""
        return tuple(s for s in self.shapes if s.is_target)

    @property
    def distractors(self) -> tuple[ShapeSpec, ...]:
        """The unlabelled look-alikes, in drawing order."""
        return tuple(s for s in self.shapes if not s.is_target)


def _check_size(height: int, width: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or value < 32:
            raise ValueError(f"{name} must be an integer >= 32 pixels; received {value!r}.")


def _random_color(rng: np.random.Generator, avoid: np.ndarray, min_distance: float = 90.0):
    """An RGB colour at least ``min_distance`` (Euclidean) from every colour in ``avoid``."""
    color = rng.integers(0, 256, size=3)
    for _ in range(50):
        if np.all(np.linalg.norm(avoid - color, axis=-1) >= min_distance):
            break
        color = rng.integers(0, 256, size=3)
    return tuple(int(c) for c in color)


def generate_scene(
    seed: int,
    index: int,
    height: int,
    width: int,
    max_targets: int = 3,
    max_distractors: int = 3,
) -> SceneSpec:
    """Draw the description of image ``index`` for ``seed``.

    Args:
        seed: dataset seed.
        index: image index; with ``seed`` it fully determines the scene.
        height, width: image size in pixels (each >= 32).
        max_targets: at most this many labelled shapes (at least one is always placed).
        max_distractors: at most this many look-alikes (at least one is placed when > 0).

    Returns:
        The scene; render it with :func:`render_scene`.
    """
    _check_size(height, width)
    if max_targets < 1:
        raise ValueError(f"max_targets must be >= 1; received {max_targets!r}.")
    if max_distractors < 0:
        raise ValueError(f"max_distractors must be >= 0; received {max_distractors!r}.")
    rng = np.random.default_rng([int(seed), int(index)])
    background = BACKGROUND_KINDS[rng.integers(len(BACKGROUND_KINDS))]
    first = rng.integers(0, 256, size=3)
    second = np.clip(first + rng.integers(-70, 71, size=3), 0, 255)
    bg_colors = (tuple(int(c) for c in first), tuple(int(c) for c in second))
    side = min(height, width)
    kinds = [CLASS_NAMES[rng.integers(len(CLASS_NAMES))] for _ in range(rng.integers(1, max_targets + 1))]
    if max_distractors:
        n_distractors = int(rng.integers(1, max_distractors + 1))
        kinds += [DISTRACTOR_KINDS[rng.integers(len(DISTRACTOR_KINDS))] for _ in range(n_distractors)]
    placed: list[ShapeSpec] = []
    avoid = np.array(bg_colors, dtype=float)
    for kind in kinds:
        radius = float(rng.uniform(0.09, 0.19) * side)
        radius = max(radius, 6.0)
        for _ in range(30):
            cy = float(rng.uniform(radius + 1, height - radius - 1))
            cx = float(rng.uniform(radius + 1, width - radius - 1))
            if all(math.hypot(cy - s.center[0], cx - s.center[1]) > radius + s.radius + 2 for s in placed):
                break
        else:
            continue  # no room left; a target is always placed first, so one always fits
        aspect = {
            "ellipse": rng.uniform(1.5, 2.0),
            "rounded_square": rng.uniform(0.35, 0.6),
            "hollow_square": rng.uniform(0.5, 0.7),
            "hollow_circle": rng.uniform(0.5, 0.7),
            "hollow_triangle": rng.uniform(0.45, 0.6),
            "trapezoid": rng.uniform(0.35, 0.6),
        }.get(kind, 1.0)
        placed.append(
            ShapeSpec(
                kind=kind,
                center=(cy, cx),
                radius=radius,
                angle=float(rng.uniform(0, 2 * math.pi)),
                color=_random_color(rng, avoid),
                aspect=float(aspect),
            )
        )
    return SceneSpec(
        height=int(height),
        width=int(width),
        background=str(background),
        background_colors=bg_colors,
        background_angle=float(rng.uniform(0, math.pi)),
        background_period=float(rng.uniform(5, 14)),
        shapes=tuple(placed),
        noise_seed=int(rng.integers(2**31 - 1)),
    )


############################################################
#  Rendering
############################################################


def _regular_polygon(spec: ShapeSpec, sides: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Vertex rows and columns of a regular polygon inscribed in the shape's circle."""
    theta = spec.angle + 2 * math.pi * np.arange(sides) / sides
    r = spec.radius * scale
    return spec.center[0] + r * np.sin(theta), spec.center[1] + r * np.cos(theta)


def _polygon_mask(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    rr, cc = skimage.draw.polygon(rows, cols, shape=shape)
    mask[rr, cc] = True
    return mask


def _disk_mask(center: tuple[float, float], radius: float, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    rr, cc = skimage.draw.disk(center, radius, shape=shape)
    mask[rr, cc] = True
    return mask


def _local_coords(spec: ShapeSpec, shape: tuple[int, int], offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (u, v) rotated into the shape's frame, each [height, width].

    ``u`` points along ``spec.angle + offset`` (towards the first vertex of ``_regular_polygon``
    when ``offset`` is 0).
    """
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    dy, dx = yy - spec.center[0], xx - spec.center[1]
    cos, sin = math.cos(spec.angle + offset), math.sin(spec.angle + offset)
    return dx * cos + dy * sin, -dx * sin + dy * cos


def shape_mask(spec: ShapeSpec, height: int, width: int) -> np.ndarray:
    """Rasterise one shape.

    Args:
        spec: the shape (its ``kind`` picks the drawing).
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        [height, width] bool: the shape's pixels.

    Raises:
        ValueError: ``spec.kind`` is not a known kind.
    """
    shape = (height, width)
    kind = spec.kind
    if kind == "square":
        return _polygon_mask(*_regular_polygon(spec, 4), shape)
    if kind == "circle":
        return _disk_mask(spec.center, spec.radius * 0.85, shape)
    if kind == "triangle":
        return _polygon_mask(*_regular_polygon(spec, 3), shape)
    if kind == "rounded_square":
        # Axes along the sides of the "square" with the same angle (its vertices sit at angle + k * 90 deg).
        u, v = _local_coords(spec, shape, offset=math.pi / 4)
        half = spec.radius / math.sqrt(2)  # half side of the square inscribed in the circle
        corner = spec.aspect * half
        qu = np.maximum(np.abs(u) - (half - corner), 0)
        qv = np.maximum(np.abs(v) - (half - corner), 0)
        return (qu**2 + qv**2 <= corner**2) & (np.abs(u) <= half) & (np.abs(v) <= half)
    if kind == "ellipse":
        mask = np.zeros(shape, dtype=bool)
        rr, cc = skimage.draw.ellipse(
            spec.center[0], spec.center[1], spec.radius * 0.9 / spec.aspect, spec.radius * 0.9,
            shape=shape, rotation=spec.angle,
        )
        mask[rr, cc] = True
        return mask
    if kind in ("hollow_square", "hollow_triangle"):
        sides = 4 if kind == "hollow_square" else 3
        outer = _polygon_mask(*_regular_polygon(spec, sides), shape)
        return outer & ~_polygon_mask(*_regular_polygon(spec, sides, spec.aspect), shape)
    if kind == "hollow_circle":
        outer = _disk_mask(spec.center, spec.radius * 0.85, shape)
        return outer & ~_disk_mask(spec.center, spec.radius * 0.85 * spec.aspect, shape)
    if kind == "half_disc":
        u, _ = _local_coords(spec, shape)
        return _disk_mask(spec.center, spec.radius * 0.9, shape) & (u >= 0)
    if kind == "trapezoid":
        u, v = _local_coords(spec, shape)
        triangle = _polygon_mask(*_regular_polygon(spec, 3), shape)
        # The apex of _regular_polygon(spec, 3) points along +u; cut it off.
        return triangle & (u <= spec.radius * (1 - 1.5 * spec.aspect))
    raise ValueError(
        f"kind must be one of {CLASS_NAMES + DISTRACTOR_KINDS}; received {kind!r}."
    )


def _background(scene: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    """[height, width, 3] float32 texture in 0..255."""
    h, w = scene.height, scene.width
    first, second = (np.array(c, dtype=np.float32) for c in scene.background_colors)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    proj = xx * math.cos(scene.background_angle) + yy * math.sin(scene.background_angle)
    if scene.background == "gradient":
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
    elif scene.background == "stripes":
        t = 0.5 + 0.5 * np.sin(2 * math.pi * proj / scene.background_period)
    else:  # "noise": blocky value noise between the two colours
        cells = rng.random((h // 4 + 2, w // 4 + 2)).astype(np.float32)
        t = np.kron(cells, np.ones((4, 4), np.float32))[:h, :w]
    t = t[..., None]
    return first * (1 - t) + second * t


def render_scene(scene: SceneSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw a scene.

    Args:
        scene: the scene (size, background, shapes in drawing order, noise seed); the same
            scene always draws the same pixels.

    Returns:
        image: [height, width, 3] uint8 RGB.
        masks: [height, width, num_targets] bool, one channel per labelled shape.
        class_ids: [num_targets] int32 in 1..len(CLASS_NAMES).
    """
    rng = np.random.default_rng(scene.noise_seed)
    h, w = scene.height, scene.width
    image = _background(scene, rng)
    masks, class_ids = [], []
    for spec in scene.shapes:
        mask = shape_mask(spec, h, w)
        # A soft shading across the shape so colour alone is not a flat template.
        u, _ = _local_coords(spec, (h, w))
        shade = 1.0 + 0.15 * np.clip(u / max(spec.radius, 1.0), -1, 1)
        image[mask] = np.clip(np.array(spec.color, np.float32) * shade[mask][:, None], 0, 255)
        if spec.is_target:
            masks.append(mask)
            class_ids.append(CLASS_NAMES.index(spec.kind) + 1)
    image += rng.normal(0.0, 8.0, size=image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    stacked = np.stack(masks, axis=-1) if masks else np.zeros((h, w, 0), dtype=bool)
    return image, stacked, np.array(class_ids, dtype=np.int32)


############################################################
#  Dataset
############################################################


class ShapesDataset(utils.Dataset):
    """The synthetic scenes as a Matterport-style ``Dataset`` (source name ``"shapes"``).

    Images are rendered on demand from their :class:`SceneSpec` (``image_info[i]["scene"]``).
    """

    def load_shapes(
        self,
        count: int,
        height: int,
        width: int,
        seed: int = 0,
        max_targets: int = 3,
        max_distractors: int = 3,
    ) -> None:
        """Add ``count`` generated images and the three target classes.

        Args:
            count: number of images (>= 1).
            height, width: image size in pixels (each >= 32).
            seed: image ``i`` is the same for a given seed whatever ``count`` is.
            max_targets, max_distractors: see :func:`generate_scene`.
        """
        if not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"count must be a positive integer; received {count!r}.")
        for i, name in enumerate(CLASS_NAMES):
            self.add_class(SOURCE, i + 1, name)
        for index in range(int(count)):
            scene = generate_scene(seed, index, height, width, max_targets, max_distractors)
            self.add_image(
                SOURCE, image_id=index, path=None, width=int(width), height=int(height),
                scene=scene, seed=int(seed),
            )

    def load_image(self, image_id: int) -> np.ndarray:
        """The generated image (images of another source are read by :meth:`Dataset.load_image`).

        Args:
            image_id: internal image id (an index of ``image_info``).

        Returns:
            [height, width, 3] uint8 RGB.
        """
        info = self.image_info[image_id]
        if info["source"] != SOURCE:
            return super().load_image(image_id)
        return render_scene(info["scene"])[0]

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Instance masks of a generated image: one per labelled shape (distractors have none).

        Args:
            image_id: internal image id (an index of ``image_info``).

        Returns:
            masks: [height, width, instances] bool.
            class_ids: [instances] int32 in 1..len(CLASS_NAMES).
        """
        info = self.image_info[image_id]
        if info["source"] != SOURCE:
            return super().load_mask(image_id)
        _, masks, class_ids = render_scene(info["scene"])
        return masks, class_ids

    def image_reference(self, image_id: int) -> str:
        """``shapes(seed=S, index=I)``: enough to regenerate the image.

        Args:
            image_id: internal image id (an index of ``image_info``).
        """
        info = self.image_info[image_id]
        if info["source"] != SOURCE:
            return super().image_reference(image_id)
        return f"shapes(seed={info['seed']}, index={info['id']})"


############################################################
#  COCO-format export
############################################################


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outline a binary mask as COCO polygons ``[[x1, y1, x2, y2, ...], ...]``.

    Contours come from ``skimage.measure.find_contours`` at level 0.5 on the zero-padded mask;
    coordinates are shifted by half a pixel so pycocotools' rasteriser (pixel ``i`` spans
    ``[i, i + 1)``) reproduces the mask up to boundary pixels. Holes cannot be expressed as COCO
    polygons, which is why :func:`write_coco_folder` defaults to RLE.

    Args:
        mask: [height, width] bool.
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    polygons = []
    for contour in skimage.measure.find_contours(padded, 0.5):
        contour = skimage.measure.approximate_polygon(contour, tolerance=0.0) - 1 + 0.5
        if len(contour) < 3:
            continue
        polygons.append([round(float(v), 2) for point in contour[:, ::-1] for v in point])
    return polygons


def write_coco_folder(
    root: str | Path,
    subset: str,
    count: int,
    height: int,
    width: int,
    seed: int,
    year: str = "2017",
    mask_format: str = "rle",
    image_format: str = "png",
    max_targets: int = 3,
    max_distractors: int = 3,
    background_images: int = 0,
) -> Path:
    """Write generated scenes as a COCO instances folder.

    Creates ``<root>/annotations/instances_<subset><year>.json`` and images
    ``<root>/<subset><year>/<image id:012d>.<image_format>``. Image ids start at 1, category ids
    are 1..3 (``CLASS_NAMES``); each image record also carries ``"distractors"`` (how many
    unlabelled look-alikes it shows) and ``"scene"`` (``seed``/``index``) for reference.

    Args:
        root: dataset folder (created if missing).
        subset: e.g. ``"train"`` or ``"val"``.
        count, height, width, seed, max_targets, max_distractors: as in
            :meth:`ShapesDataset.load_shapes`.
        year: appended to the subset name, as COCO does.
        mask_format: ``"rle"`` (compressed RLE, exact) or ``"polygon"`` (contours; boundary pixels
            may differ after rasterisation, holes are lost).
        image_format: ``"png"`` (lossless) or ``"jpg"``.
        background_images: after the ``count`` scenes, this many background-only ones (scenes
            ``count``, ``count + 1``, ... with their targets removed, distractors kept), image ids
            ``count + 1`` on, without annotations; ``CocoDataset.load_coco(empty_images=...)``
            picks them up.

    Returns:
        Path of the annotation JSON.
    """
    if mask_format not in ("rle", "polygon"):
        raise ValueError(f"mask_format must be 'rle' or 'polygon'; received {mask_format!r}.")
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg'; received {image_format!r}.")
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be a positive integer; received {count!r}.")
    root = Path(root)
    image_dir = root / f"{subset}{year}"
    ann_dir = root / "annotations"
    image_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    if not isinstance(background_images, (int, np.integer)) or background_images < 0:
        raise ValueError(f"background_images must be an integer >= 0; received {background_images!r}.")
    for index in range(int(count) + int(background_images)):
        scene = generate_scene(seed, index, height, width, max_targets, max_distractors)
        if index >= count:  # background-only: the look-alikes stay, the labelled shapes go
            scene = replace(scene, shapes=scene.distractors)
        image, masks, class_ids = render_scene(scene)
        image_id = index + 1
        file_name = f"{image_id:012d}.{image_format}"
        skimage.io.imsave(image_dir / file_name, image, check_contrast=False)
        images.append({
            "id": image_id, "file_name": file_name, "height": int(height), "width": int(width),
            "distractors": len(scene.distractors), "scene": {"seed": int(seed), "index": index},
        })
        for k in range(masks.shape[-1]):
            rle = mask_utils.encode(np.asfortranarray(masks[..., k].astype(np.uint8)))
            if mask_format == "rle":
                segmentation = {"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")}
            else:
                segmentation = mask_to_polygons(masks[..., k])
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(class_ids[k]),
                "segmentation": segmentation, "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0,
            })
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASS_NAMES)]
    document = {
        "info": {"description": "mrcnn_ohem synthetic shapes with look-alike distractors",
                 "seed": int(seed), "version": "1"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    path = ann_dir / f"instances_{subset}{year}.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def ensure_coco_folder(
    root: str | Path,
    subset: str,
    count: int,
    size: int,
    seed: int,
    year: str = "2017",
    background_images: int = 0,
) -> Path:
    """Write ``subset`` with :func:`write_coco_folder` unless an identical one is already there.

    The annotation file's ``info`` records ``count``, ``size``, ``seed`` (and
    ``background_images`` when not 0); a folder written with other values is regenerated.

    Args:
        root: dataset folder (created if missing).
        subset: e.g. ``"train"`` or ``"val"``.
        count: number of scenes with targets.
        size: height and width of the square images, in pixels.
        seed: scene seed, as in :meth:`ShapesDataset.load_shapes`.
        year: appended to the subset name, as COCO does.
        background_images: background-only scenes after the ``count`` ones (see
            :func:`write_coco_folder`).

    Returns:
        Path of the annotation JSON.
    """
    path = Path(root) / "annotations" / f"instances_{subset}{year}.json"
    wanted = {"count": int(count), "height": int(size), "width": int(size), "seed": int(seed)}
    if background_images:
        wanted["background_images"] = int(background_images)
    if path.is_file():
        try:
            info = json.loads(path.read_text(encoding="utf-8")).get("info", {})
        except (json.JSONDecodeError, UnicodeDecodeError):
            info = {}
        if all(info.get(k) == v for k, v in wanted.items()) and info.get("background_images", 0) == background_images:
            return path
    path = write_coco_folder(root, subset, count, size, size, seed, year=year,
                             background_images=int(background_images))
    document = json.loads(path.read_text(encoding="utf-8"))
    document["info"].update(wanted)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path
