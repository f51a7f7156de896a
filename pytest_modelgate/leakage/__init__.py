"""Find test images that also sit in the train split: exact copies and near-duplicates.

Stages, each named in every pair it finds:

1. ``pixels``: identical decoded pixels, also after a horizontal mirror (the same picture
   saved as PNG in train and BMP in test; a flipped augmentation copy).
2. ``phash``: a 64-bit perceptual hash of the low DCT frequencies of a 32x32 greyscale
   thumbnail (see ``perceptual_hashes``), computed on the image and its mirror, within a
   Hamming distance;
   each candidate is then confirmed by the correlation of the two 16x16 greyscale
   thumbnails (mirror-aware), which keeps distinct images with similar hashes (two white
   cars on a white background) from being called copies. Finds re-encoded, resized,
   brightened, contrast-changed and noisy copies.
3. ``aligned`` (the ``strict`` preset): copies cut, zoomed, shifted, turned, recoloured and
   re-encoded at once, which the hashes miss: each test image's most alike train images
   by coarse layout, seen through cut and shifted windows, confirmed when a refined
   alignment lines up their 16x16 thumbnails and fine detail (see ``aligned``).
4. ``embedding`` (opt in): nearest train images by a model's pooled features, confirmed
   by a crop-aligned correlation.

The hash search is multi-index hashing: the 64 bits are four 16-bit chunks, and any two
hashes within distance t agree to within t // 4 bits on at least one chunk (pigeonhole),
so each query probes the few chunk values near its own instead of every train hash. The
cost grows about linearly with the number of images, and memory with the candidates, not
with train x test.
"""

from .hashing import hash_neighbours, median_hashes, perceptual_hashes
from .pairs import PRESETS, LeakPair, LeakScan, Preset
from .prepare import MIN_NEAR_SIDE
from .scan import find_leaks, scan_leaks

__all__ = ["MIN_NEAR_SIDE", "PRESETS", "LeakPair", "LeakScan", "Preset",
           "find_leaks", "hash_neighbours", "median_hashes", "perceptual_hashes", "scan_leaks"]
