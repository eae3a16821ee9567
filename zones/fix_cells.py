"""The H3 cells of fixes: one ``latlng_to_cell`` at ``FINE_RES``, its ancestors by bit arithmetic.

Apart from the index because it is arithmetic on cell ids, not on zones: which cell a fix falls in at the
finest resolution (the compiled h3 function for one fix, h3ronpy for a batch when installed) and the masks
that turn that cell into its ancestor at any coarser resolution, exactly as ``cell_to_parent`` does (see
docs/zones.md, *The parent trap*, for why one cell per fix is enough).
"""

from __future__ import annotations

import h3
import numpy as np
from h3.api import basic_int as h3i

from zones import kernel
from zones.sizing import FINEST_RES

# h3's own compiled function, without the API module's Python wrapper around it (a tenth of match()'s time)
latlng_to_cell = getattr(getattr(h3, "_cy", None), "latlng_to_cell", h3i.latlng_to_cell)

try:  # vectorised latlng_to_cell (~2x the h3 Python loop); optional
    from h3ronpy.vector import coordinates_to_cells as _h3ronpy_cells
except ImportError:  # pragma: no cover
    _h3ronpy_cells = None

FINE_RES = FINEST_RES

KEEP_ARR, SET_ARR = kernel.res_masks(np.arange(16))
KEEP = [int(k) & 0xFFFFFFFFFFFFFFFF for k in KEEP_ARR]  # the same masks as Python ints, for match()
SET = [int(v) for v in SET_ARR]


def ancestors_at(cells: np.ndarray, res: int) -> np.ndarray:
    """Vectorised ``cell_to_parent`` of int64 cells (all at a finer or equal resolution) to ``res``."""
    parents: np.ndarray = (cells & KEEP_ARR[res]) | SET_ARR[res]
    return parents


def cells_at(lats: np.ndarray, lngs: np.ndarray, res: int) -> np.ndarray:
    """int64 H3 cells of finite, in-range fixes (callers filter); vectorised with h3ronpy when available."""
    if _h3ronpy_cells is not None and len(lats) > 64:
        return np.asarray(_h3ronpy_cells(lats, lngs, res)).view(np.int64)
    return np.fromiter(
        (h3i.latlng_to_cell(a, b, res) for a, b in zip(lats.tolist(), lngs.tolist(), strict=True)),
        dtype=np.uint64,
        count=len(lats),
    ).view(np.int64)
