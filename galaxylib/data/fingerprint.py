"""A fingerprint of a data set: what a run folder records so that a changed data folder is never resumed or
reused by mistake.

It hashes the GalaxyIDs, the label values (the bytes of the float32 table, NaN where unlabelled) and, for every
image, its path, size and modification time (mtime_ns) -- not the image bytes: reading 61,578 JPEGs (about
2 GB) on every rerun would cost more than the check is worth, while a stat per file costs well under a second.
An image rewritten in place with the same size within the same nanosecond would go unnoticed; copying a folder
with `cp -a`, `rsync -a` or unzipping the same archive again keeps the fingerprint.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from galaxylib.data.read import GalaxyData

PARTS = ("ids", "labels", "images")


def data_fingerprint(data: GalaxyData) -> dict:
    """The fingerprint of `data` as a small JSON-able dict.

    Args:
        data: galaxies as read (galaxylib.data.load_folders, with or without the image check).

    Returns:
        {"galaxies": N, "ids": hex, "labels": hex, "images": hex}: sha256 digests (first 16 hex digits) of the
        GalaxyIDs, the labels, and every image's (path, size, mtime_ns).

    Raises:
        OSError: an image vanished while it was being fingerprinted.
    """
    ids = hashlib.sha256(np.ascontiguousarray(data.ids, np.int64).tobytes())
    labels = hashlib.sha256(b"unlabelled" if data.labels is None else
                            np.ascontiguousarray(data.labels, np.float32).tobytes())  # fmt: skip
    images = hashlib.sha256()
    for path in data.image_paths:
        st = os.stat(path)
        images.update(f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"galaxies": len(data), "ids": ids.hexdigest()[:16], "labels": labels.hexdigest()[:16],
            "images": images.hexdigest()[:16]}  # fmt: skip


def describe_change(old: dict, new: dict) -> str | None:
    """What differs between two fingerprints, in words ("80 galaxies then, 70 now; the GalaxyIDs, labels and
    images differ"), or None when they are the same."""
    changed = [part for part in PARTS if old.get(part) != new.get(part)]
    if not changed:
        return None
    names = {"ids": "GalaxyIDs", "labels": "labels", "images": "images (path, size or modification time)"}
    words = [names[p] for p in changed]
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    count = (f"{old.get('galaxies')} galaxies then, {new.get('galaxies')} now; "
             if old.get("galaxies") != new.get("galaxies") else "")  # fmt: skip
    return f"{count}the {listed} differ"
