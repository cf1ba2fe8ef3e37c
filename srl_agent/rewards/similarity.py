"""String similarity backends for the step reward, by name.

- ``difflib``: exactly ``difflib.SequenceMatcher(None, a, b).ratio()`` (2M/T, Ratcliff–Obershelp with
  difflib's default autojunk heuristic), the paper's reward. It is computed by ``_ratcliff.c``, the
  stdlib's algorithm on code-point arrays, compiled at install; where that extension is missing, by
  ``cydifflib``, another port of it (``DIFFLIB_KERNEL`` says which). Both give the stdlib's value to
  the last bit (tests check this on real actions and on random strings).
- ``lcs``: rapidfuzz's normalised Indel similarity, 1 − (|a| + |b| − 2·LCS)/(|a| + |b|): an exact
  longest-common-subsequence ratio in C, far faster, and never below the difflib ratio up to rounding
  (difflib's matching blocks form one common subsequence; the LCS is the longest).

Both are 1.0 for two empty strings and 0.0 when exactly one is empty.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from cydifflib import SequenceMatcher
from rapidfuzz.distance import Indel

try:  # compiled at install (setup.py)
    from ._ratcliff import ratio as _ratcliff_ratio
except ImportError:
    _ratcliff_ratio = None

Similarity = Callable[[str, str], float]
DIFFLIB_KERNEL = "ratcliff" if _ratcliff_ratio is not None else "cydifflib"


class DifflibRatio:
    """``difflib.SequenceMatcher(None, a, b).ratio()``, computed by cydifflib (without ``_ratcliff``).

    GRPO scores G completions against the same expert action, and SequenceMatcher caches everything it
    knows about its second sequence (``b2j``, the junk and popular sets). So one matcher per recent
    ``b`` is kept and only ``a`` is swapped in: the same algorithm on the same inputs, hence the same
    value, minus the re-indexing of ``b``. The cache is per thread (a matcher is mutable).
    """

    name = "difflib"

    def __init__(self, cache_size: int = 64):
        self.cache_size = cache_size
        self._local = threading.local()

    def __call__(self, a: str, b: str) -> float:
        cache = getattr(self._local, "matchers", None)
        if cache is None:
            cache = self._local.matchers = {}
        matcher = cache.get(b)
        if matcher is None:
            if len(cache) >= self.cache_size:
                del cache[next(iter(cache))]  # oldest first: dicts keep insertion order
            matcher = cache[b] = SequenceMatcher(None, None, b)
        matcher.set_seq1(a)
        return matcher.ratio()

    # Matchers are a cache, not state: leave them out of pickles (TRL may ship rewards to a worker).
    def __getstate__(self) -> dict:
        return {"cache_size": self.cache_size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["cache_size"])


# Called as it is, without a Python wrapper around it (a frame costs a tenth of the lcs reward). It
# does not pickle, so StepReward pickles by name (StepReward.__reduce__).
lcs_ratio: Similarity = Indel.normalized_similarity

SIMILARITIES = ("difflib", "lcs")


def get_similarity(name: str) -> Similarity:
    if name == "difflib":
        return _ratcliff_ratio if _ratcliff_ratio is not None else DifflibRatio()
    if name == "lcs":
        return lcs_ratio
    raise ValueError(f"unknown similarity {name!r}; known: {', '.join(SIMILARITIES)}")
