"""Text normalisation and string similarity for matching.

The similarity measures are the textbook ones: the Jaro similarity (Jaro 1989) with
Winkler's prefix bonus (Winkler 1990), and the optimal-string-alignment variant of the
Damerau-Levenshtein distance, cut off early once it exceeds a bound.

Both are written here in pure Python. With the ``identity`` extra installed
(``pip install crmkit[identity]``: rapidfuzz), the same measures are computed by
rapidfuzz's compiled ones instead, many times faster on the hundreds of thousands of
pairs a store's duplicate search compares; the values are the same (Winkler's bonus is
added here to rapidfuzz's Jaro similarity, exactly as below).
"""

from __future__ import annotations

from collections.abc import Callable

# The one folding function of crmkit: identity matching and search fold text alike.
from crmkit.search import fold

__all__ = ["damerau_within", "fold", "jaro_winkler", "token_key"]


def token_key(folded: str) -> str:
    """The words of a folded text, sorted: "juan carlos" and "carlos juan" have one key."""
    return " ".join(sorted(folded.split()))


def _load_compiled() -> tuple[Callable[..., float], Callable[..., int]] | None:
    try:
        from rapidfuzz.distance import OSA, Jaro
    except ImportError:
        return None
    return Jaro.similarity, OSA.distance


_COMPILED = _load_compiled()


def _winkler(jaro: float, s: str, t: str, prefix_scale: float) -> float:
    """Winkler's boost of a Jaro similarity for a common prefix of up to four characters."""
    prefix = 0
    for a, b in zip(s[:4], t[:4], strict=False):
        if a != b:
            break
        prefix += 1
    return jaro + prefix * prefix_scale * (1 - jaro)


def jaro_winkler(s: str, t: str, prefix_scale: float = 0.1) -> float:
    """Jaro-Winkler similarity in [0, 1] (1: equal)."""
    if _COMPILED is None:
        return jaro_winkler_python(s, t, prefix_scale)
    if s == t:
        return 1.0
    jaro = _COMPILED[0](s, t)
    return _winkler(jaro, s, t, prefix_scale)


def damerau_within(s: str, t: str, bound: int) -> int:
    """The optimal-string-alignment distance of ``s`` and ``t`` if it is at most ``bound``, else bound + 1."""
    if _COMPILED is None:
        return damerau_within_python(s, t, bound)
    return _COMPILED[1](s, t, score_cutoff=bound)


def jaro_winkler_python(s: str, t: str, prefix_scale: float = 0.1) -> float:
    """``jaro_winkler`` in pure Python (used without the ``identity`` extra)."""
    if s == t:
        return 1.0
    ls, lt = len(s), len(t)
    if not ls or not lt:
        return 0.0
    if ls > lt:
        s, t, ls, lt = t, s, lt, ls
    window = max(lt // 2 - 1, 0)
    used: set[int] = set()
    s_matched: list[str] = []
    t_positions: list[int] = []
    find = t.find
    for i, ch in enumerate(s):
        lo = i - window if i > window else 0
        hi = i + window + 1
        j = find(ch, lo, hi)
        while j != -1 and j in used:
            j = find(ch, j + 1, hi)
        if j != -1:
            used.add(j)
            s_matched.append(ch)
            t_positions.append(j)
    matches = len(s_matched)
    if not matches:
        return 0.0
    t_positions.sort()
    half_transpositions = 0
    for ch, j in zip(s_matched, t_positions, strict=True):
        if ch != t[j]:
            half_transpositions += 1
    jaro = (matches / ls + matches / lt + (matches - half_transpositions // 2) / matches) / 3
    return _winkler(jaro, s, t, prefix_scale)


def damerau_within_python(s: str, t: str, bound: int) -> int:
    """``damerau_within`` in pure Python (used without the ``identity`` extra).

    Only the diagonal band of width ``2 * bound + 1`` of the dynamic programme is filled
    (cells farther off the diagonal exceed the bound anyway), and it stops at the first row
    whose every cell exceeds the bound.
    """
    if s == t:
        return 0
    ls, lt = len(s), len(t)
    if abs(ls - lt) > bound:
        return bound + 1
    if ls == lt:
        mismatches = [k for k in range(ls) if s[k] != t[k]]
        if len(mismatches) <= 1:
            return len(mismatches)
        if len(mismatches) == 2 and mismatches[1] == mismatches[0] + 1:
            a = mismatches[0]
            if s[a] == t[a + 1] and s[a + 1] == t[a]:
                return 1
        if len(mismatches) <= bound:
            return len(mismatches) if bound >= 2 else bound + 1
    over = bound + 1
    before: list[int] | None = None
    previous = [j if j <= over else over for j in range(lt + 1)]
    for i in range(1, ls + 1):
        current = [over] * (lt + 1)
        current[0] = i if i <= over else over
        row_min = current[0]
        si = s[i - 1]
        lo = max(1, i - bound)
        hi = min(lt, i + bound)
        for j in range(lo, hi + 1):
            cost = 0 if si == t[j - 1] else 1
            value = previous[j - 1] + cost
            if previous[j] + 1 < value:
                value = previous[j] + 1
            if current[j - 1] + 1 < value:
                value = current[j - 1] + 1
            if before is not None and j > 1 and si == t[j - 2] and s[i - 2] == t[j - 1] and before[j - 2] + 1 < value:
                value = before[j - 2] + 1
            current[j] = value if value < over else over
            if value < row_min:
                row_min = value
        if row_min > bound:
            return over
        before, previous = previous, current
    return previous[lt] if previous[lt] <= bound else over
