"""Small images as data URIs: what the assertions attach to a leaked pair and what the
report shows of the samples that changed against the baseline.

Pure: no pytest, no jinja2; numpy and Pillow are imported when an image is drawn.
"""

from __future__ import annotations

from typing import Any

THUMB_PX = 40


def thumbnail(image: Any) -> str:
    """A small image as a data URI (PNG for grey, JPEG for colour), upscaled without
    smoothing so 8x8 scans stay legible."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    img = Image.fromarray(arr)
    scale = THUMB_PX / max(img.size)
    size = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
    img = img.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX)
    buf = io.BytesIO()
    if img.mode == "L":
        img.save(buf, format="PNG", optimize=True)
        mime = "png"
    else:
        img.convert("RGB").save(buf, format="JPEG", quality=85)
        mime = "jpeg"
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")
