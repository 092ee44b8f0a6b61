"""The ``Dataset`` base class (Matterport's ``mrcnn.utils.Dataset``), re-exported by :mod:`.utils`.

Subclass it, register classes and images, override the loaders; every dataset of this package
(:mod:`mrcnn_ohem.datasets`) builds on it.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import skimage.color
import skimage.io

logger = logging.getLogger(__name__)

__all__ = ["Dataset"]


class Dataset:
    """Base class of datasets: subclass it, register classes and images, override loaders.

    A subclass adds its classes with :meth:`add_class` and images with :meth:`add_image`,
    overrides :meth:`load_mask` (and :meth:`load_image` if images are not files), then calls
    :meth:`prepare`. Internal ids are consecutive integers; class 0 is the background ``BG``.
    Several sources (e.g. ``"coco"`` and ``"shapes"``) can live in one dataset.

    Args:
        class_map: accepted for Matterport compatibility and unused, as upstream.
    """

    def __init__(self, class_map: Any = None) -> None:
        self._image_ids: np.ndarray = np.zeros([0], dtype=np.int64)
        self.image_info: list[dict[str, Any]] = []
        self.class_info: list[dict[str, Any]] = [{"source": "", "id": 0, "name": "BG"}]
        self.source_class_ids: dict[str, list[int]] = {}

    def add_class(self, source: str, class_id: int, class_name: str) -> None:
        """Register class ``class_id`` of ``source``; a repeated (source, id) is ignored.

        Args:
            source: the name of the data source, e.g. ``"coco"`` (no ``.``).
            class_id: the class's id in that source (e.g. a COCO category id).
            class_name: its display name (:meth:`prepare` keeps the part before a comma).

        Raises:
            ValueError: ``source`` contains a dot (ids are keyed ``"source.id"``).
        """
        if "." in source:
            raise ValueError(f"source: expected a name without '.', received {source!r}")
        for info in self.class_info:
            if info["source"] == source and info["id"] == class_id:
                return
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source: str, image_id: Any, path: str | None, **kwargs: Any) -> None:
        """Register an image; extra keyword arguments are stored in its ``image_info`` dict.

        Args:
            source: the name of the data source, e.g. ``"coco"``.
            image_id: the image's id in that source (e.g. a COCO image id).
            path: the image file, read by :meth:`load_image`; None when a subclass's
                :meth:`load_image` does not read files.
            **kwargs: more entries of the image's ``image_info`` dict (e.g. ``height``,
                ``width``, ``annotations``).
        """
        info = {"id": image_id, "source": source, "path": path}
        info.update(kwargs)
        self.image_info.append(info)

    def image_reference(self, image_id: int) -> str:
        """A link or description of the image for debugging; override in subclasses.

        Args:
            image_id: internal image id (an index of ``image_info``).

        Returns:
            The link or description; this base version returns ``""``.
        """
        return ""

    def prepare(self, class_map: Any = None) -> None:
        """Build the id tables; call after adding classes and images (and after any change).

        Sets ``num_classes``, ``class_ids``, ``class_names``, ``num_images``, ``image_ids``,
        ``class_from_source_map`` (``"source.id" -> class id``), ``image_from_source_map``
        (``"source.id" -> image id``), ``sources`` and ``source_class_ids`` (``source ->
        [class ids]``, the background included for every source).

        Args:
            class_map: accepted for Matterport compatibility and unused, as upstream.
        """
        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        # Keep the first comma-separated part of a name (COCO names are "a, b").
        self.class_names = [str(c["name"]).split(",")[0] for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)
        self.class_from_source_map = {f"{info['source']}.{info['id']}": int(class_id)
                                      for info, class_id in zip(self.class_info, self.class_ids)}
        self.image_from_source_map = {f"{info['source']}.{info['id']}": int(image_id)
                                      for info, image_id in zip(self.image_info, self._image_ids)}
        self.sources = sorted({info["source"] for info in self.class_info})
        self.source_class_ids = {
            source: [i for i, info in enumerate(self.class_info)
                     if i == 0 or info["source"] == source]
            for source in self.sources
        }

    def map_source_class_id(self, source_class_id: str) -> int:
        """Internal class id of ``"source.id"``, e.g. ``"coco.12" -> 11``.

        Args:
            source_class_id: ``"<source>.<id in that source>"``, as registered with
                :meth:`add_class` (needs :meth:`prepare`).

        Raises:
            KeyError: unknown id; the message lists a few known ones.
        """
        try:
            return self.class_from_source_map[source_class_id]
        except KeyError:
            known = list(self.class_from_source_map)[:5]
            raise KeyError(f"source_class_id: expected a registered 'source.id' such as "
                           f"{known}, received {source_class_id!r}") from None

    def get_source_class_id(self, class_id: int, source: str) -> Any:
        """The id that ``source`` uses for internal class ``class_id``.

        Args:
            class_id: internal class id (an index of ``class_info``).
            source: the data source the class must belong to, e.g. ``"coco"``.

        Raises:
            ValueError: the class does not belong to ``source``.
        """
        info = self.class_info[class_id]
        if info["source"] != source:
            raise ValueError(f"class_id {class_id}: expected a class of source {source!r}, "
                             f"received one of source {info['source']!r}")
        return info["id"]

    @property
    def image_ids(self) -> np.ndarray:
        """[num_images] int, the internal image ids (set by :meth:`prepare`)."""
        return self._image_ids

    def source_image_link(self, image_id: int) -> str:
        """Path or URL of the image.

        Args:
            image_id: internal image id (an index of ``image_info``).
        """
        return self.image_info[image_id]["path"]

    def load_image(self, image_id: int) -> np.ndarray:
        """Read the image file; always returns RGB.

        Args:
            image_id: internal image id (an index of ``image_info``).

        Returns:
            [height, width, 3] uint8 (grayscale expanded to RGB, alpha dropped).
        """
        image = skimage.io.imread(self.image_info[image_id]["path"])
        if image.ndim == 2:
            image = skimage.color.gray2rgb(image)
        elif image.ndim == 3 and image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        if image.shape[-1] == 4:
            image = image[..., :3]
        return image

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Instance masks of an image; this base version has none and warns.

        Override it in a subclass.

        Args:
            image_id: internal image id (an index of ``image_info``).

        Returns:
            ``(masks, class_ids)``. An override returns masks [height, width, instances] bool,
            one binary mask per instance, and class_ids [instances] int32 internal class ids
            (negative for crowds); this base version returns masks [0, 0, 0] and class_ids [0].
        """
        logger.warning("Dataset.load_mask() was called for image %s and returns no "
                       "instances; override load_mask() in your Dataset subclass.", image_id)
        return np.empty([0, 0, 0], dtype=bool), np.empty([0], dtype=np.int32)
