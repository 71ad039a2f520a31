"""Probabilistic record matching on plain records: blocking, comparison levels, EM-trained weights.

The model is Fellegi and Sunter's (1969): each compared pair gets, per field, an
agreement level; a field at level ``k`` contributes ``log(m_k / u_k)``, where ``m_k`` is
the chance of that level among true matches and ``u_k`` among non-matches. ``u`` is
measured on random pairs (the exact-agreement level straight from the value
frequencies); ``m`` and the share of matches ``lambda`` are estimated without labels by
expectation-maximisation over the compared pairs (Winkler 1988; Jaro 1989), or from
labelled pairs with ``Matcher.train``. Exact agreement on a value is weighted by how rare
the value is (term-frequency adjustment, as in Winkler 1989 and splink): two records
sharing a rare surname say more than two sharing the commonest one.

Only pairs sharing a blocking key are compared. By default every field except
categories is a blocking key on its own (pairs agreeing exactly on it are compared), and
a key value shared by so many records that its block would hold more than
``block_limit`` pairs is skipped: it separates nothing.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from crmkit._errors import ValidationError
from crmkit.identity._text import damerau_within, fold, jaro_winkler, token_key

__all__ = ["KINDS", "Match", "Matcher", "Parameters", "prior_parameters"]

Row = Mapping[str, Any]

#: The comparison levels of each field kind, best agreement last (level index = position).
KINDS: Mapping[str, tuple[str, ...]] = {
    "name": ("different", "similar (Jaro-Winkler >= 0.80)", "close (Jaro-Winkler >= 0.92)", "same"),
    "text": ("different", "one typo or Jaro-Winkler >= 0.88", "same"),
    "address": ("different", "similar (Jaro-Winkler >= 0.80)", "close (Jaro-Winkler >= 0.92)", "same"),
    "postcode": ("different", "one typo", "same"),
    "category": ("different", "same"),
    "date": ("different", "two typos", "one typo or day and month swapped", "same"),
    "identifier": ("different", "two typos", "one typo", "same"),
}


@attrs.frozen
class Match:
    """A likely match: rows ``i`` and ``j`` (in ``link``: ``i`` of the left rows, ``j`` of the right)."""

    i: int
    j: int
    probability: float


@attrs.frozen
class Parameters:
    """A trained model: the share of matches among compared pairs, and m and u per field and level."""

    match_share: float
    m: Mapping[str, tuple[float, ...]]
    u: Mapping[str, tuple[float, ...]]
    #: Per field, the chance that two random records agree exactly: the term-frequency
    #: adjustment scales the exact level's u by a value's frequency over this.
    agreement: Mapping[str, float] = attrs.field(factory=dict)

    def weight(self, field: str, level: int) -> float:
        """The log-likelihood ratio (natural log) a field adds at a level."""
        return math.log(self.m[field][level] / self.u[field][level])


# --------------------------------------------------------------------------- preparing values


def _prepare(kind: str, value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    folded = fold(text)
    if not folded:
        return None
    if kind in ("postcode", "identifier", "date"):
        return folded.replace(" ", "")
    if kind == "address":
        return token_key(folded)
    return folded


# --------------------------------------------------------------------------- comparators


def _name(a: str, b: str) -> int:
    if a == b or token_key(a) == token_key(b):
        return 3
    similarity = jaro_winkler(a, b)
    if similarity >= 0.92:
        return 2
    return 1 if similarity >= 0.80 else 0


def _text(a: str, b: str) -> int:
    if a == b:
        return 2
    return 1 if damerau_within(a, b, 1) <= 1 or jaro_winkler(a, b) >= 0.88 else 0


def _address(a: str, b: str) -> int:
    if a == b:
        return 3
    similarity = jaro_winkler(a, b)
    if similarity >= 0.92:
        return 2
    return 1 if similarity >= 0.80 else 0


def _postcode(a: str, b: str) -> int:
    if a == b:
        return 2
    return 1 if damerau_within(a, b, 1) <= 1 else 0


def _category(a: str, b: str) -> int:
    return 1 if a == b else 0


def _date(a: str, b: str) -> int:
    if a == b:
        return 3
    if len(a) == len(b) == 8 and a[:4] == b[:4] and a[4:6] == b[6:8] and a[6:8] == b[4:6]:
        return 2  # YYYYMMDD with day and month swapped
    distance = damerau_within(a, b, 2)
    return 2 if distance <= 1 else 1 if distance == 2 else 0


def _identifier(a: str, b: str) -> int:
    if a == b:
        return 3
    distance = damerau_within(a, b, 2)
    return 2 if distance <= 1 else 1 if distance == 2 else 0


_COMPARATORS: Mapping[str, Callable[[str, str], int]] = {
    "name": _name,
    "text": _text,
    "address": _address,
    "postcode": _postcode,
    "category": _category,
    "date": _date,
    "identifier": _identifier,
}


# --------------------------------------------------------------------------- the matcher


class Matcher:
    """Fellegi-Sunter matching of plain records (mappings of text or None), no store needed.

    ``fields`` maps field names to kinds (``KINDS``: name, text, address, postcode,
    category, date, identifier). ``deduplicate(rows)`` and ``link(left, right)`` block,
    compare, estimate the model by EM (unless ``train`` or ``parameters`` fixed it) and
    return every pair whose match probability is at least ``threshold``. With fewer than
    ``train_from`` compared pairs there is too little to learn from, and the prior model
    (``prior_parameters``: typical weights per kind) is used instead.
    """

    def __init__(
        self,
        fields: Mapping[str, str],
        *,
        threshold: float = 0.5,
        blocking: Sequence[Sequence[str]] | None = None,
        block_limit: int = 100,
        parameters: Parameters | None = None,
        sample_size: int = 10_000,
        seed: int = 0,
        train_from: int = 1_000,
    ) -> None:
        if not isinstance(fields, Mapping) or not fields:
            raise ValidationError("fields", "must map at least one field name to a kind", fields)
        for name, kind in fields.items():
            if not isinstance(name, str) or not name:
                raise ValidationError("fields", "field names must be non-empty text", name)
            if kind not in KINDS:
                raise ValidationError(f"fields.{name}", f"must be one of {', '.join(KINDS)}", kind)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
            raise ValidationError("threshold", "must be a probability above 0 and at most 1", threshold)
        if isinstance(block_limit, bool) or not isinstance(block_limit, int) or block_limit < 1:
            raise ValidationError("block_limit", "must be a positive integer", block_limit)
        self.fields: dict[str, str] = dict(fields)
        self.threshold = float(threshold)
        if blocking is None:
            names = list(self.fields)
            singles = [(name,) for name in names if self.fields[name] != "category"]
            blocking = singles + [(a, b) for x, a in enumerate(names) for b in names[x + 1 :]]
        rules = []
        for rule in blocking:
            rule = (rule,) if isinstance(rule, str) else tuple(rule)
            for name in rule:
                if name not in self.fields:
                    raise ValidationError("blocking", f"names {name!r}, which is not one of the fields", rule)
            if rule:
                rules.append(rule)
        if not rules:
            raise ValidationError("blocking", "needs at least one blocking rule", blocking)
        self.blocking: tuple[tuple[str, ...], ...] = tuple(rules)
        self.block_limit = block_limit
        self.sample_size = sample_size
        self.train_from = train_from
        self.seed = seed
        self.parameters: Parameters | None = parameters
        self._fixed = parameters is not None
        self._cache: dict[str, dict[tuple[str, str], int]] = {name: {} for name in self.fields}

    def __repr__(self) -> str:
        return f"Matcher(fields={self.fields!r}, threshold={self.threshold})"

    # ----------------------------------------------------------------- public API

    def deduplicate(self, rows: Sequence[Row], *, pairs: Iterable[tuple[int, int]] | None = None) -> list[Match]:
        """Pairs ``Match(i, j, probability)`` of likely duplicates among ``rows``, ``i < j``, best first.

        ``pairs`` gives the candidate pairs ``(i, j)`` when the blocking was done elsewhere
        (a store finding the rows that share a key); only they are compared.
        """
        prepared = self._prepare_rows("rows", rows)
        if pairs is None:
            return self._run(prepared, prepared, self._candidates(prepared, None), dedupe=True)
        given: set[tuple[int, int]] = set()
        for pair in pairs:
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(type(x) is int for x in pair)):
                raise ValidationError("pairs", "must hold (i, j) pairs of row indexes", pair)
            i, j = pair
            if not 0 <= i < len(prepared) or not 0 <= j < len(prepared) or i == j:
                raise ValidationError("pairs", f"must index two different rows of {len(prepared)}", pair)
            given.add((i, j) if i < j else (j, i))
        return self._run(prepared, prepared, given, dedupe=True)

    def deduplicate_pairs(self, rows: Sequence[Row], pairs: set[tuple[int, int]]) -> list[Match]:
        """``deduplicate(rows, pairs=pairs)`` for pairs known to be well formed: ``i < j``, both rows of ``rows``.

        A store's duplicate search builds hundreds of thousands of pairs itself; checking
        each again would cost as much as comparing some of them.
        """
        prepared = self._prepare_rows("rows", rows)
        return self._run(prepared, prepared, pairs, dedupe=True)

    def link(self, left: Sequence[Row], right: Sequence[Row]) -> list[Match]:
        """Pairs ``Match(i, j, probability)``: row ``i`` of ``left`` likely is row ``j`` of ``right``."""
        left_prepared = self._prepare_rows("left", left)
        right_prepared = self._prepare_rows("right", right)
        pairs = self._candidates(left_prepared, right_prepared)
        return self._run(left_prepared, right_prepared, pairs, dedupe=False)

    def train(
        self, rows: Sequence[Row], matches: Iterable[tuple[int, int]], right: Sequence[Row] | None = None
    ) -> Parameters:
        """Supervised estimate: m from the labelled matching pairs, u from random pairs; fixes the model."""
        left_prepared = self._prepare_rows("rows", rows)
        right_prepared = left_prepared if right is None else self._prepare_rows("right", right)
        labelled = [(int(i), int(j)) for i, j in matches]
        if not labelled:
            raise ValidationError("matches", "needs at least one labelled pair", matches)
        u = self._estimate_u(left_prepared, right_prepared, dedupe=right is None)
        m: dict[str, tuple[float, ...]] = {}
        for index, (name, kind) in enumerate(self.fields.items()):
            counts = [0.5] * len(KINDS[kind])
            for i, j in labelled:
                level = self._level(index, name, left_prepared[i][index], right_prepared[j][index])
                if level >= 0:
                    counts[level] += 1
            total = sum(counts)
            m[name] = tuple(c / total for c in counts)
        candidates = self._candidates(left_prepared, right_prepared if right is not None else None)
        share = min(max(len(labelled) / max(len(candidates), 1), 1e-6), 0.999)
        self.parameters = Parameters(share, m, u, {name: u[name][-1] for name in self.fields})
        self._fixed = True
        return self.parameters

    def explain(self, a: Row, b: Row) -> dict[str, str]:
        """How two records compare, field by field: the agreement level's name (missing values left out)."""
        left = self._prepare_rows("a", [a])[0]
        right = self._prepare_rows("b", [b])[0]
        out = {}
        for k, (name, kind) in enumerate(self.fields.items()):
            level = self._level(k, name, left[k], right[k])
            if level >= 0:
                out[name] = KINDS[kind][level]
        return out

    def explain_pairs(self, rows: Sequence[Row], pairs: Iterable[tuple[int, int]]) -> list[dict[str, str]]:
        """``explain`` for pairs ``(i, j)`` of ``rows``, each row they name folded once."""
        wanted = [(int(i), int(j)) for i, j in pairs]
        involved = sorted({k for pair in wanted for k in pair})
        prepared = dict(zip(involved, self._prepare_rows("rows", [rows[k] for k in involved]), strict=True))
        names = list(self.fields.items())
        out = []
        for i, j in wanted:
            found = {}
            for k, (name, kind) in enumerate(names):
                level = self._level(k, name, prepared[i][k], prepared[j][k])
                if level >= 0:
                    found[name] = KINDS[kind][level]
            out.append(found)
        return out

    # ----------------------------------------------------------------- steps

    def _prepare_rows(self, field: str, rows: Sequence[Row]) -> list[tuple[str | None, ...]]:
        if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
            raise ValidationError(field, "must be a sequence of mappings", rows)
        kinds = list(self.fields.items())
        out = []
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise ValidationError(field, "must contain mappings of field values", row).at_row(i)
            out.append(tuple(_prepare(kind, row.get(name)) for name, kind in kinds))
        return out

    def _candidates(
        self, left: list[tuple[str | None, ...]], right: list[tuple[str | None, ...]] | None
    ) -> set[tuple[int, int]]:
        """The pairs sharing a blocking key (union over the rules), skipping oversized blocks."""
        index_of = {name: k for k, name in enumerate(self.fields)}
        codes: dict[str, int] = {}
        left_columns = [_codes([r[k] for r in left], codes) for k in range(len(self.fields))]
        right_columns = (
            None if right is None else [_codes([r[k] for r in right], codes) for k in range(len(self.fields))]
        )
        width = len(codes) + 1
        pairs: set[tuple[int, int]] = set()
        limit = self.block_limit
        for rule in self.blocking:
            positions = [index_of[name] for name in rule]
            left_blocks = _blocks(_keys(left_columns, positions, width))
            if right_columns is None:
                for members in left_blocks.values():
                    n = len(members)
                    if n < 2 or n * (n - 1) // 2 > limit:
                        continue
                    for a in range(n - 1):
                        i = members[a]
                        pairs.update([(i, j) for j in members[a + 1 :]])
            else:
                right_blocks = _blocks(_keys(right_columns, positions, width))
                for key, members in left_blocks.items():
                    others = right_blocks.get(key)
                    if not others or len(members) * len(others) > limit:
                        continue
                    for i in members:
                        pairs.update([(i, j) for j in others])
        return pairs

    def _level(self, index: int, name: str, a: str | None, b: str | None) -> int:
        if a is None or b is None:
            return -1
        key = (a, b) if a <= b else (b, a)
        cache = self._cache[name]
        level = cache.get(key)
        if level is None:
            level = cache[key] = _COMPARATORS[self.fields[name]](key[0], key[1])
        return level

    def _patterns(
        self,
        left: list[tuple[str | None, ...]],
        right: list[tuple[str | None, ...]],
        pairs: Sequence[tuple[int, int]],
    ) -> list[tuple[int, int, tuple[int, ...]]]:
        """Each pair's agreement levels, field by field (-1: a value is missing).

        Computed a field at a time over all pairs, with each field's comparisons cached by
        value pair: names, postcodes and dates repeat, and the loop stays tight.
        """
        columns = []
        for k, (name, kind) in enumerate(self.fields.items()):
            compare = _COMPARATORS[kind]
            cache = self._cache[name]
            top = len(KINDS[kind]) - 1
            column: list[int] = []
            append = column.append
            for i, j in pairs:
                a = left[i][k]
                b = right[j][k]
                if a is None or b is None:
                    append(-1)
                elif a == b:
                    append(top)
                else:
                    key = (a, b) if a < b else (b, a)
                    level = cache.get(key)
                    if level is None:
                        level = cache[key] = compare(key[0], key[1])
                    append(level)
            columns.append(column)
        return [(i, j, levels) for (i, j), levels in zip(pairs, zip(*columns, strict=True), strict=True)]

    def _estimate_u(
        self, left: list[tuple[str | None, ...]], right: list[tuple[str | None, ...]], *, dedupe: bool
    ) -> dict[str, tuple[float, ...]]:
        """u per field and level: exact agreement from value frequencies, the other levels from random pairs."""
        rng = random.Random(self.seed)
        names = list(self.fields)
        samples: list[tuple[int, int]] = []
        if len(left) and len(right) and not (dedupe and len(left) < 2):
            for _ in range(self.sample_size):
                i, j = rng.randrange(len(left)), rng.randrange(len(right))
                if dedupe and i == j:
                    continue
                samples.append((i, j))
        u: dict[str, tuple[float, ...]] = {}
        for k, name in enumerate(names):
            levels = len(KINDS[self.fields[name]])
            exact = _exact_share([r[k] for r in left], [r[k] for r in right])
            counts = [0.0] * levels
            for i, j in samples:
                level = self._level(k, name, left[i][k], right[j][k])
                if 0 <= level < levels - 1:
                    counts[level] += 1
            rest = sum(counts)
            below = 1.0 - exact
            probabilities = []
            for level in range(levels - 1):
                probabilities.append(max(below * (counts[level] + 0.5) / (rest + 0.5 * (levels - 1)), 1e-9))
            probabilities.append(max(exact, 1e-9))
            total = sum(probabilities)
            u[name] = tuple(p / total for p in probabilities)
        return u

    def _em(
        self,
        patterns: list[tuple[int, int, tuple[int, ...]]],
        u: Mapping[str, tuple[float, ...]],
        most_matches: int,
    ) -> Parameters:
        """m, u and the match share by expectation-maximisation over the compared pairs' patterns.

        ``u`` starts from the random-pair estimate and is re-estimated too: the compared pairs
        are not random ones (they share a blocking key), and a model whose non-matches look
        like random pairs explains neighbours sharing a postcode as matches. Except an
        identifier's exact level (an e-mail, a phone, a national id): two different people
        share one only by a collision, which the value frequencies measure. Re-estimated, it
        feeds back: when the compared pairs are mostly people sharing a name, the pairs that
        share an e-mail and nothing else known are half taken for non-matches, which in turn
        makes sharing an e-mail look common among non-matches.

        The share of matches is kept at most ``most_matches`` over the number of pairs (a
        record has few true matches): without that bound, on weak fields EM may settle on
        the trivial solution where every compared pair is a match.
        """
        names = list(self.fields)
        counted = Counter(p for _, _, p in patterns)
        m: dict[str, list[float]] = {}
        for name in names:
            levels = len(KINDS[self.fields[name]])
            start = [0.1 / max(levels - 1, 1)] * (levels - 1) + [0.9]
            m[name] = start
        ceiling = min(0.5, max(most_matches, 1) / max(len(patterns), 1))
        share = ceiling / 2
        u_now = {name: list(u[name]) for name in names}
        pinned = {name: u[name][-1] for name in names if self.fields[name] == "identifier"}
        log_u = {name: [math.log(x) for x in u_now[name]] for name in names}
        items = list(counted.items())
        for _ in range(200):
            log_m = {name: [math.log(x) for x in m[name]] for name in names}
            prior = math.log(share / (1 - share))
            sums = {name: [0.0] * len(m[name]) for name in names}
            other = {name: [0.0] * len(m[name]) for name in names}
            matched = 0.0
            total = 0.0
            for pattern, count in items:
                score = prior
                for k, level in enumerate(pattern):
                    if level >= 0:
                        name = names[k]
                        score += log_m[name][level] - log_u[name][level]
                p = _sigmoid(score)
                weight = p * count
                matched += weight
                total += count
                for k, level in enumerate(pattern):
                    if level >= 0:
                        sums[names[k]][level] += weight
                        other[names[k]][level] += count - weight
            change = 0.0
            for name in names:
                for target, row in ((m, sums[name]), (u_now, other[name])):
                    denominator = sum(row)
                    if denominator <= 0:
                        continue
                    new = [max(x / denominator, 1e-6) for x in row]
                    scale = sum(new)
                    new = [x / scale for x in new]
                    if target is u_now and name in pinned:
                        # an identifier's exact agreement among non-matches: the value collisions
                        # of random pairs, not what the compared pairs' feedback makes of it
                        rest = sum(new[:-1])
                        new = [x * (1 - pinned[name]) / rest for x in new[:-1]] + [pinned[name]] if rest > 0 else new
                    change = max(change, max(abs(a - b) for a, b in zip(new, target[name], strict=True)))
                    target[name] = new
                log_u[name] = [math.log(x) for x in u_now[name]]
            new_share = min(max(matched / total, 1e-7), ceiling) if total else share
            change = max(change, abs(new_share - share))
            share = new_share
            if change < 1e-7:
                break
        return Parameters(
            share,
            {name: tuple(v) for name, v in m.items()},
            {name: tuple(v) for name, v in u_now.items()},
            {name: u[name][-1] for name in names},
        )

    def _run(
        self,
        left: list[tuple[str | None, ...]],
        right: list[tuple[str | None, ...]],
        pairs: set[tuple[int, int]],
        *,
        dedupe: bool,
    ) -> list[Match]:
        patterns = self._patterns(left, right, sorted(pairs))
        if len(patterns) < self.train_from and not self._fixed:
            self.parameters = prior_parameters(self.fields)
        elif not self._fixed or self.parameters is None:
            u = self._estimate_u(left, right, dedupe=dedupe)
            most = 2 * len(left) if dedupe else min(len(left), len(right))
            self.parameters = self._em(patterns, u, most)
        scored = self._score(left, right, patterns, self.parameters)
        found = [Match(i, j, p) for i, j, p in scored if p >= self.threshold]
        found.sort(key=lambda match: (-match.probability, match.i, match.j))
        return found

    def _score(
        self,
        left: list[tuple[str | None, ...]],
        right: list[tuple[str | None, ...]],
        patterns: list[tuple[int, int, tuple[int, ...]]],
        parameters: Parameters,
    ) -> list[tuple[int, int, float]]:
        names = list(self.fields)
        weights = [[parameters.weight(name, level) for level in range(len(KINDS[self.fields[name]]))] for name in names]
        top = [len(w) - 1 for w in weights]
        average = [parameters.agreement.get(name, 0.0) for name in names]
        frequency = [
            _frequencies([r[k] for r in left], None if left is right else [r[k] for r in right])
            for k in range(len(names))
        ]
        prior = math.log(parameters.match_share / (1 - parameters.match_share))
        out = []
        for i, j, pattern in patterns:
            score = prior
            a = left[i]
            for k, level in enumerate(pattern):
                if level < 0:
                    continue
                if level == top[k] and average[k] > 0:
                    share = frequency[k].get(a[k] or "", 0.0)
                    # u of agreeing on this value: the level's u, scaled by how common the value is
                    score += weights[k][level] - (math.log(share / average[k]) if share > 0 else 0.0)
                else:
                    score += weights[k][level]
            out.append((i, j, _sigmoid(score)))
        return out


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _codes(values: list[str | None], codes: dict[str, int]) -> list[int]:
    """Each value as a small integer (shared across fields and sides; -1 for a missing value)."""
    out = []
    for value in values:
        if value is None:
            out.append(-1)
            continue
        code = codes.get(value)
        if code is None:
            code = codes[value] = len(codes)
        out.append(code)
    return out


def _keys(columns: list[list[int]], positions: list[int], width: int) -> list[int]:
    """The blocking key of every row for a rule (one integer; -1 when a part is missing)."""
    keys = columns[positions[0]]
    for position in positions[1:]:
        keys = [-1 if a < 0 or b < 0 else a * width + b for a, b in zip(keys, columns[position], strict=True)]
    return keys


def _blocks(keys: list[int]) -> dict[int, list[int]]:
    blocks: dict[int, list[int]] = {}
    for index, key in enumerate(keys):
        if key >= 0:
            found = blocks.get(key)
            if found is None:
                blocks[key] = [index]
            else:
                found.append(index)
    return blocks


def _exact_share(left: list[str | None], right: list[str | None]) -> float:
    """The chance that two random records (left, right) agree exactly, both values present."""
    left_counts = Counter(v for v in left if v is not None)
    right_counts = Counter(v for v in right if v is not None)
    n_left, n_right = sum(left_counts.values()), sum(right_counts.values())
    if not n_left or not n_right:
        return 1e-9
    return sum(c * right_counts.get(v, 0) for v, c in left_counts.items()) / (n_left * n_right)


def _frequencies(left: list[str | None], right: list[str | None] | None) -> dict[str, float]:
    """Each value's share among present values (both sides together): its u for exact agreement."""
    counts = Counter(v for v in left if v is not None)
    if right is not None:
        counts.update(v for v in right if v is not None)
    total = sum(counts.values())
    return {v: c / total for v, c in counts.items()} if total else {}


#: A model for data too small to train on: typical m and u per kind (levels as in ``KINDS``).
_PRIOR: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "name": ((0.03, 0.04, 0.08, 0.85), (0.97, 0.02, 0.007, 0.003)),
    "text": ((0.05, 0.1, 0.85), (0.95, 0.03, 0.02)),
    "address": ((0.05, 0.05, 0.1, 0.8), (0.97, 0.02, 0.0095, 0.0005)),
    "postcode": ((0.03, 0.07, 0.9), (0.98, 0.015, 0.005)),
    "category": ((0.05, 0.95), (0.8, 0.2)),
    "date": ((0.02, 0.03, 0.05, 0.9), (0.97, 0.02, 0.0099, 0.0001)),
    "identifier": ((0.1, 0.02, 0.03, 0.85), (0.9989, 0.0005, 0.0005, 0.0001)),
}


def prior_parameters(fields: Mapping[str, str], match_share: float = 0.001) -> Parameters:
    """A fixed model for ``fields`` (typical m and u per kind), for data too small for EM."""
    return Parameters(
        match_share,
        {name: _PRIOR[kind][0] for name, kind in fields.items()},
        {name: _PRIOR[kind][1] for name, kind in fields.items()},
    )
