"""What each customer will buy next: own repeat purchases, items bought together, popularity.

Needs the ``models`` extra (numpy and scipy); see docs/value.md, "Next purchase".

``NextPurchase().fit(baskets)`` takes ``(customer, occurred_at, products)`` triples: any
hashable customers and products, ``occurred_at`` aware datetimes, dates or numbers (only
the order of one customer's baskets matters). A product's score for a customer is

    score = a * repeat + w * (1 - a) * ((1 - m) * together + m * popularity)

* ``repeat``: the customer's own basket shares with recency decay: each basket weighs
  ``decay ** (number of the customer's later baskets)``, shared equally by its products,
  and the weights are divided by their sum (personal item frequency, the next-basket
  baseline that Li et al. 2023 found hard to beat; the decay follows TIFU-KNN, Hu et
  al. 2020);
* ``together``: item-to-item co-occurrence: for each product the customer bought, its
  ``neighbours`` most similar products by cosine similarity of the baskets containing
  them, weighted by ``repeat`` (similarities of one product sum to 1);
* ``popularity``: the product's share of all basket lines (this alone is what a
  customer the model has not seen gets);
* ``a``: the customer's repeat share, the fraction of the products of its second and
  later baskets that it had bought before, shrunk towards the share of all customers
  with weight ``repeat_prior`` (in products);
* ``m``: ``popularity_share``; ``w``: ``explore_weight``, how much new products count
  against repeats.

``decay`` and ``explore_weight`` are chosen by the data unless given: each of up to
``calibration_customers`` customers with two baskets or more has its last basket
predicted from its earlier ones, with co-occurrence counted without those baskets, and
the pair with the best mean Recall@10 wins (when those baskets are under 1% of all, the
neighbours counted without them are kept for the model too). Every computation is on
sparse matrices: the work grows with the number of line items and neighbours, not
customers x products.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import gc
import itertools
import math
import operator
import uuid
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from crmkit._errors import ValidationError
from crmkit.value.models._base import NotFittedError

__all__ = ["NextPurchase"]

_P = TypeVar("_P", bound="NextPurchase")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: Tried in this order; on a tie in calibration recall the earlier value is kept.
DECAYS = (0.85, 0.7, 1.0, 0.5)
EXPLORE_WEIGHTS = (1.0, 2.0, 0.5, 4.0)
_CALIBRATION_K = 10
_MIN_CALIBRATION = 50  # fewer customers with two baskets: keep the first values of the grids
_REUSE_BELOW = 0.01  # calibration baskets under this share of all: their co-occurrence is reused
# Work is done in blocks small enough for the arrays of one block (a few MB) to be reused
# from the heap: fresh large arrays cost page faults that dominate simple numpy passes.
_BLOCK_ENTRIES = 60_000  # bought products of the customers scored at a time
_BLOCK_PAIRS = 3_000_000  # co-occurrence pairs counted at a time
_FLOOR = 1e-30


class NextPurchase:
    """Next-basket recommender: personal repeat frequency, co-occurrence for new products, popularity.

    ``fit`` then ``recommend(customer, k)`` or ``recommend_many(customers, k)``; both return
    ``(product, score)`` pairs, best first. ``new_only=True`` ranks only products the
    customer has not bought (cross-selling). Scores are comparable within one customer's
    list. A customer the fit has not seen gets the most popular products.

    Settings (see the module docstring for the score): ``decay`` per later basket and
    ``explore_weight`` (None: calibrated), ``neighbours`` per product (20),
    ``popularity_share`` (0.1), ``repeat_prior`` in products (10),
    ``calibration_customers`` sampled for calibration (20,000; 0 keeps the first values
    of ``DECAYS`` and ``EXPLORE_WEIGHTS``) and the ``seed`` of that sample.
    """

    def __init__(
        self,
        *,
        decay: float | None = None,
        explore_weight: float | None = None,
        neighbours: int = 20,
        popularity_share: float = 0.1,
        repeat_prior: float = 10.0,
        calibration_customers: int = 20_000,
        seed: int = 0,
    ) -> None:
        if decay is not None:
            _check_real("decay", decay, low=0.0, high=1.0, open_low=True)
        if explore_weight is not None:
            _check_real("explore_weight", explore_weight, low=0.0, open_low=True)
        _check_count("neighbours", neighbours, low=1)
        _check_real("popularity_share", popularity_share, low=0.0, high=1.0, open_high=True)
        _check_real("repeat_prior", repeat_prior, low=0.0)
        _check_count("calibration_customers", calibration_customers, low=0)
        _check_count("seed", seed, low=0)
        self.decay = None if decay is None else float(decay)
        self.explore_weight = None if explore_weight is None else float(explore_weight)
        self.neighbours = int(neighbours)
        self.popularity_share = float(popularity_share)
        self.repeat_prior = float(repeat_prior)
        self.calibration_customers = int(calibration_customers)
        self.seed = int(seed)
        #: Recall@10 of the calibration baskets per (decay, explore_weight) tried; empty if none ran.
        self.calibration: dict[tuple[float, float], float] = {}
        self._model: _Model | None = None

    def __repr__(self) -> str:
        if self._model is None:
            return "<NextPurchase (not fitted)>"
        m = self._model
        return (
            f"<NextPurchase {len(m.customers)} customers, {len(m.products)} products, "
            f"decay={m.decay}, explore_weight={m.explore_weight}>"
        )

    # ------------------------------------------------------------------ fitting
    def fit(self: _P, baskets: Iterable[tuple[Hashable, Any, Iterable[Hashable]]]) -> _P:
        """Learn from ``(customer, occurred_at, products)`` triples (products: a collection).

        A product listed twice in one basket counts once; a basket without products is
        ignored. Raises ValidationError naming the field and the row of a bad triple.
        """
        with _bulk():
            data = _read(baskets)
        self._model = _fit(self, data)
        return self

    @property
    def params(self) -> dict[str, float]:
        """The values in use: ``decay``, ``explore_weight`` (given or calibrated) and ``repeat_share``."""
        m = self._fitted()
        return {"decay": m.decay, "explore_weight": m.explore_weight, "repeat_share": m.repeat_share}

    @property
    def customers(self) -> tuple[Hashable, ...]:
        """The customers seen by ``fit``: integers in order, others in order of first appearance."""
        return tuple(self._fitted().customers)

    @property
    def products(self) -> tuple[Hashable, ...]:
        """The products seen by ``fit``: sorted when they compare, else in order of first appearance."""
        return tuple(self._fitted().products)

    # ------------------------------------------------------------------ recommending
    def recommend(self, customer: Hashable, k: int = 10, *, new_only: bool = False) -> list[tuple[Hashable, float]]:
        """The ``k`` products ``customer`` is most likely to buy next, ``(product, score)`` best first."""
        return next(iter(self.recommend_many([customer], k, new_only=new_only).values()))

    def recommend_many(
        self, customers: Iterable[Hashable] | None = None, k: int = 10, *, new_only: bool = False
    ) -> dict[Hashable, list[tuple[Hashable, float]]]:
        """``{customer: [(product, score), ...]}`` for many customers at once (all fitted ones when None).

        Computed in blocks of customers with sparse matrix products; customers the fit has
        not seen get the most popular products.
        """
        m = self._fitted()
        _check_count("k", k, low=1)
        if not isinstance(new_only, bool):
            raise ValidationError("new_only", "must be True or False", new_only)
        if customers is None:
            wanted: list[Hashable] = m.customers
            codes = np.arange(len(wanted), dtype=np.int64)
        else:
            if isinstance(customers, (str, bytes)) or not isinstance(customers, Iterable):
                raise ValidationError("customers", "must be an iterable of customers or None", customers)
            wanted = list(customers)
            codes = _codes("customers", wanted, m.customer_index)
        with _bulk():
            return self._recommend(m, wanted, codes, k, new_only)

    def _recommend(
        self, m: _Model, wanted: list[Hashable], codes: IntArray, k: int, new_only: bool
    ) -> dict[Hashable, list[tuple[Hashable, float]]]:
        out: dict[Hashable, list[tuple[Hashable, float]]] = {}
        labels = m.product_labels
        known = codes >= 0
        if not known.all():
            items, scores = m.popular(k)
            top = list(zip(labels[items].tolist(), scores.tolist(), strict=False))
            for c in itertools.compress(wanted, ~known):
                out[c] = list(top)
        idx = np.flatnonzero(known)
        for part in _blocks(idx, np.diff(m.repeat.indptr)[codes[idx]]):
            items, scores = m.top(codes[part], k, new_only)
            keys = [wanted[i] for i in part.tolist()]
            full = (items >= 0).all(axis=1)
            names = labels[items[full]].tolist()
            rows = map(list, map(zip, names, scores[full].tolist()))
            chosen = cast("list[bool]", full.tolist())
            out.update(zip(itertools.compress(keys, chosen), rows, strict=True))
            for row in np.flatnonzero(~full).tolist():  # fewer than k products to offer
                n = int((items[row] >= 0).sum())
                out[keys[row]] = list(zip(labels[items[row, :n]].tolist(), scores[row, :n].tolist(), strict=False))
        if not known.all():  # unknown customers went first: back to the order asked for
            out = {c: out[c] for c in wanted}
        return out

    def _fitted(self) -> _Model:
        if self._model is None:
            raise NotFittedError("NextPurchase", "is not fitted: call fit(baskets) first")
        return self._model


@contextlib.contextmanager
def _bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of small objects are built.

    Every few hundred new containers it would otherwise walk the young objects, and
    the older generations (with everything the caller holds) again and again; nothing
    built here forms a cycle. The collector is left as it was found.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# ---------------------------------------------------------------------- reading the baskets


class _Baskets:
    """Baskets as arrays, sorted by customer then time: the products of basket b are
    ``items[indptr[b]:indptr[b + 1]]`` (distinct, sorted), ``age`` counts the customer's later baskets."""

    def __init__(
        self,
        customers: list[Hashable],
        products: list[Hashable],
        customer: IntArray,
        age: IntArray,
        basket: sp.csr_matrix,
    ) -> None:
        self.customers = customers
        self.products = products
        self.customer = customer
        self.age = age
        self.basket = basket


def _read(baskets: Iterable[tuple[Hashable, Any, Iterable[Hashable]]]) -> _Baskets:
    if isinstance(baskets, (str, bytes)) or not isinstance(baskets, Iterable):
        raise ValidationError("baskets", "must be an iterable of (customer, occurred_at, products)", baskets)
    who: list[Hashable] = []
    when: list[Any] = []
    what: list[Any] = []
    add_who, add_when, add_what = who.append, when.append, what.append
    for row, entry in enumerate(baskets):
        try:
            one, at, products = entry
        except (TypeError, ValueError):
            raise ValidationError(
                "baskets", "each basket must be a (customer, occurred_at, products) triple", entry
            ).at_row(row) from None
        add_who(one)
        add_when(at)
        add_what(products)
    if not who:
        raise ValidationError("baskets", "is empty: there is nothing to learn from", baskets)
    sizes = _sizes(what)
    keep = sizes > 0
    if not keep.any():
        raise ValidationError("baskets", "hold no products: there is nothing to learn from", baskets)
    keys = _time_keys(when)
    customer, customer_labels = _encode("customer", who)
    item, products = _encode("products", list(itertools.chain.from_iterable(what)), groups=what, ordered=True)
    indptr = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=indptr[1:])
    basket = sp.csr_matrix(
        (np.ones(len(item), dtype=np.float32), item.astype(np.int32), indptr), shape=(len(sizes), len(products))
    )
    if not keep.all():
        basket, customer, keys = basket[np.flatnonzero(keep)], customer[keep], keys[keep]
    basket.sum_duplicates()  # sorts each basket's products and merges repeats
    basket.data[:] = 1.0
    # Sort by customer then time (stable: equal times keep their input order).
    ordered = bool(np.all(np.diff(customer) >= 0)) and bool(np.all((np.diff(keys) >= 0) | (np.diff(customer) > 0)))
    if not ordered:
        order = np.lexsort((keys, customer))
        basket, customer = basket[order], customer[order]
    n_customers = len(customer_labels)
    counts = np.bincount(customer, minlength=n_customers)
    starts = np.cumsum(counts) - counts
    position = np.arange(len(customer), dtype=np.int64) - starts[customer]
    age = counts[customer] - 1 - position
    # Customers whose every basket was empty are dropped (codes stay dense).
    seen = counts > 0
    customers = customer_labels
    if not seen.all():
        remap = np.cumsum(seen) - 1
        customer = remap[customer]
        customers = list(itertools.compress(customers, seen.tolist()))
    return _Baskets(customers, products, customer, age, basket)


def _sizes(groups: list[Any]) -> IntArray:
    for kind in set(map(type, groups)):
        if issubclass(kind, (str, bytes)) or not hasattr(kind, "__len__") or not hasattr(kind, "__iter__"):
            row = next(i for i, g in enumerate(groups) if type(g) is kind)
            raise ValidationError(
                "products", "must be a collection of products (a list, tuple or set), not a single value", groups[row]
            ).at_row(row)
    return np.fromiter(map(len, groups), dtype=np.int64, count=len(groups))


def _time_keys(times: list[Any]) -> FloatArray:
    """Sortable float keys of one kind of time for all baskets: aware datetimes, dates, or numbers."""
    kinds = set(map(type, times))
    first = type(times[0])
    if issubclass(first, dt.datetime):
        _same_kind(times, kinds, lambda k: issubclass(k, dt.datetime), "a datetime like the first basket's")
        zones = set(map(operator.attrgetter("tzinfo"), times))
        if None in zones or not all(isinstance(z, dt.timezone) for z in zones):  # fixed offsets always answer
            offsets = list(map(dt.datetime.utcoffset, times))
            if None in offsets:
                row = offsets.index(None)
                raise ValidationError("occurred_at", "must be timezone-aware", times[row]).at_row(row)
        return np.fromiter(map(dt.datetime.timestamp, times), dtype=np.float64, count=len(times))
    if issubclass(first, dt.date):
        _same_kind(
            times,
            kinds,
            lambda k: issubclass(k, dt.date) and not issubclass(k, dt.datetime),
            "a date like the first basket's",
        )
        return np.fromiter(map(dt.date.toordinal, times), dtype=np.float64, count=len(times))
    message = "must be an aware datetime, a date or a finite number, one kind for all baskets"
    _same_kind(times, kinds, _is_number, message)
    keys = np.array(times, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(keys))
    if len(bad):
        raise ValidationError("occurred_at", message, times[bad[0]]).at_row(int(bad[0]))
    return keys


def _is_number(kind: type) -> bool:
    return issubclass(kind, (int, float, np.integer, np.floating)) and not issubclass(kind, (bool, np.bool_))


def _same_kind(times: list[Any], kinds: set[type], ok: Any, what: str) -> None:
    bad = {k for k in kinds if not ok(k)}
    if bad:
        row = next(i for i, t in enumerate(times) if type(t) in bad)
        raise ValidationError("occurred_at", f"must be {what}", times[row]).at_row(row)


def _encode(
    field: str, values: list[Hashable], *, groups: list[Any] | None = None, ordered: bool = False
) -> tuple[IntArray, list[Hashable]]:
    """Each value's code and the distinct values by code; ValidationError at an unhashable one.

    Integers are coded by numpy (sorted; a lookup table when their range is compact), so a
    million customer numbers cost no million dictionary misses; UUIDs by their 128-bit
    number, whose hash is computed in C. Anything else takes one dictionary lookup per
    value (a missing key takes the next number). Codes follow first appearance, or with
    ``ordered`` the sorted values when they compare, so that ties between products are
    broken the same whatever the input order.
    """
    kinds = set(map(type, values))
    if kinds and all(k is int or issubclass(k, np.integer) for k in kinds):
        coded = _encode_integers(values)
        if coded is not None:
            return coded
    keys: Iterable[Hashable] = map(operator.attrgetter("int"), values) if kinds == {uuid.UUID} else values
    index: collections.defaultdict[Hashable, int] = collections.defaultdict(itertools.count().__next__)
    try:
        codes = np.fromiter(map(index.__getitem__, keys), dtype=np.int64, count=len(values))
    except TypeError:
        _raise_unhashable(field, values, groups)
    # Codes are numbered by first appearance: a value is new where the code exceeds all before it.
    if len(codes):
        seen = np.maximum.accumulate(codes)
        first = np.flatnonzero(np.concatenate([[True], codes[1:] > seen[:-1]]))
    else:
        first = np.zeros(0, dtype=np.int64)
    labels = [values[i] for i in first.tolist()]
    if ordered:
        try:
            order = sorted(range(len(labels)), key=cast(Any, labels).__getitem__)
        except TypeError:
            return codes, labels
        recode = np.empty(len(labels), dtype=np.int64)
        recode[order] = np.arange(len(labels))
        return recode[codes], [labels[i] for i in order]
    return codes, labels


def _encode_integers(values: list[Hashable]) -> tuple[IntArray, list[Hashable]] | None:
    try:
        numbers = np.fromiter(cast(Iterable[int], values), dtype=np.int64, count=len(values))
    except OverflowError:
        return None  # beyond 64 bits: the dictionary copes
    low = int(numbers.min())
    span = int(numbers.max()) - low + 1
    if span <= 4 * len(values) + 65_536:
        present = np.zeros(span, dtype=bool)
        present[numbers - low] = True
        table = np.cumsum(present) - 1
        return table[numbers - low], (np.flatnonzero(present) + low).tolist()
    distinct, codes = np.unique(numbers, return_inverse=True)
    return codes.reshape(-1), distinct.tolist()


def _raise_unhashable(field: str, values: Iterable[Hashable], groups: list[Any] | None) -> NoReturn:
    rows: Iterable[Any] = ([v] for v in values) if groups is None else groups
    for row, candidates in enumerate(rows):
        for value in candidates:
            try:
                hash(value)
            except TypeError:
                raise ValidationError(field, "must be hashable", value).at_row(row) from None
    raise AssertionError("unreachable: an unhashable value was reported")  # pragma: no cover


def _codes(field: str, values: list[Hashable], index: dict[Hashable, int]) -> IntArray:
    get = index.get
    try:
        return np.fromiter((get(v, -1) for v in values), dtype=np.int64, count=len(values))
    except TypeError:
        for row, value in enumerate(values):
            try:
                hash(value)
            except TypeError:
                raise ValidationError(field, "must hold hashable customers", value).at_row(row) from None
        raise  # pragma: no cover


# ---------------------------------------------------------------------- the model


class _Model:
    """A fitted model: repeat shares, repeat matrix, neighbour matrix, popularity."""

    def __init__(
        self,
        customers: list[Hashable],
        products: list[Hashable],
        repeat: sp.csr_matrix,
        share: FloatArray,
        together: sp.csr_matrix,
        popularity: FloatArray,
        decay: float,
        explore_weight: float,
        popularity_share: float,
        repeat_share: float,
    ) -> None:
        self.customers = customers
        self._customer_index: dict[Hashable, int] | None = None
        self.products = products
        self.product_labels = np.empty(len(products), dtype=object)
        self.product_labels[:] = products
        self.repeat = repeat
        self.share = share
        self.together = together
        self.popularity = popularity
        self.decay = decay
        self.explore_weight = explore_weight
        self.popularity_share = popularity_share
        self.repeat_share = repeat_share
        self.ranked = np.argsort(-popularity, kind="stable")  # most popular first; ties: lower code
        self.rank = np.empty_like(self.ranked)
        self.rank[self.ranked] = np.arange(len(self.ranked))

    @property
    def customer_index(self) -> dict[Hashable, int]:
        """Customer -> row, built on first use (ranking every customer does not need it)."""
        if self._customer_index is None:
            self._customer_index = {c: i for i, c in enumerate(self.customers)}
        return self._customer_index

    def popular(self, k: int) -> tuple[IntArray, FloatArray]:
        items = self.ranked[:k]
        return items, self.popularity[items]

    def top(self, rows: IntArray, k: int, new_only: bool) -> tuple[IntArray, FloatArray]:
        candidates = _Candidates(
            self.repeat[rows],
            self.share[rows],
            self.together,
            self.popularity,
            self.ranked,
            self.rank,
            k,
            self.popularity_share,
            explore_weight=self.explore_weight,
            new_only=new_only,
        )
        return candidates.top(self.explore_weight)


def _fit(spec: NextPurchase, data: _Baskets) -> _Model:
    n_customers, n_products = len(data.customers), len(data.products)
    basket = data.basket
    sizes = np.diff(basket.indptr)
    popularity = np.bincount(basket.indices, minlength=n_products).astype(np.float64)
    popularity /= popularity.sum()

    decays = DECAYS if spec.decay is None else (spec.decay,)
    weights = EXPLORE_WEIGHTS if spec.explore_weight is None else (spec.explore_weight,)
    decay, explore_weight = decays[0], weights[0]
    spec.calibration = {}
    together: sp.csr_matrix | None = None
    if len(decays) * len(weights) > 1 and spec.calibration_customers > 0:
        chosen = _calibrate(spec, data, popularity, decays, weights)
        if chosen is not None:
            (decay, explore_weight), together = chosen
    if together is None:
        together = _neighbours(basket, spec.neighbours)
    repeat = _repeat_matrix(data.customer, data.age, basket, n_customers, decay)
    share, overall = _repeat_share(data.customer, data.age, sizes, repeat, spec.repeat_prior)
    return _Model(
        data.customers,
        data.products,
        repeat,
        share,
        together,
        popularity,
        decay,
        explore_weight,
        spec.popularity_share,
        overall,
    )


def _calibrate(
    spec: NextPurchase,
    data: _Baskets,
    popularity: FloatArray,
    decays: Sequence[float],
    weights: Sequence[float],
) -> tuple[tuple[float, float], sp.csr_matrix | None] | None:
    """Predict sampled customers' last baskets from their earlier ones; the best (decay, weight) wins.

    Returns the choice and, when the held-back baskets are a negligible share of all, the
    neighbour matrix counted without them (good enough to keep), else None for it.
    """
    n_customers = len(data.customers)
    counts = np.bincount(data.customer, minlength=n_customers)
    eligible = np.flatnonzero(counts >= 2)
    if len(eligible) < _MIN_CALIBRATION:
        return None
    rng = np.random.default_rng(spec.seed)
    if len(eligible) > spec.calibration_customers:
        eligible = np.sort(rng.choice(eligible, spec.calibration_customers, replace=False))
    sample = np.zeros(n_customers, dtype=bool)
    sample[eligible] = True
    is_target = sample[data.customer] & (data.age == 0)
    target_rows = np.flatnonzero(is_target)
    rest = np.flatnonzero(~is_target)
    basket = data.basket
    together = _neighbours(basket[rest], spec.neighbours)
    # The sample's earlier baskets, re-coded 0..len(sample)-1, ages counted from the held-back basket.
    remap = np.cumsum(sample) - 1
    early = np.flatnonzero(sample[data.customer] & (data.age > 0))
    customer = remap[data.customer[early]]
    age = data.age[early] - 1
    history = basket[early]
    sizes = np.diff(history.indptr)
    share, _ = _repeat_share(
        customer, age, sizes, _repeat_matrix(customer, age, history, len(eligible), 1.0), spec.repeat_prior
    )
    targets = basket[target_rows]  # one per sampled customer, in customer order
    ranked = np.argsort(-popularity, kind="stable")
    rank = np.empty_like(ranked)
    rank[ranked] = np.arange(len(ranked))
    best: tuple[float, tuple[float, float]] | None = None
    for decay in decays:
        repeat = _repeat_matrix(customer, age, history, len(eligible), decay)
        found = dict.fromkeys(weights, 0.0)
        for part in _blocks(np.arange(len(eligible)), np.diff(repeat.indptr)):
            candidates = _Candidates(
                repeat[part], share[part], together, popularity, ranked, rank, _CALIBRATION_K, spec.popularity_share
            )
            for weight in weights:
                items, _ = candidates.top(weight)
                found[weight] += _hits(items, targets[part])
        for weight in weights:
            recall = found[weight] / len(eligible)
            spec.calibration[(decay, weight)] = recall
            if best is None or recall > best[0]:
                best = (recall, (decay, weight))
    assert best is not None
    reuse = len(target_rows) < _REUSE_BELOW * basket.shape[0]
    return best[1], (together if reuse else None)


def _blocks(rows: IntArray, entries: IntArray) -> Iterator[IntArray]:
    """``rows`` in consecutive blocks holding about ``_BLOCK_ENTRIES`` entries each."""
    if len(rows) == 0:
        return
    bounds = np.searchsorted(np.cumsum(entries), np.arange(_BLOCK_ENTRIES, int(entries.sum()), _BLOCK_ENTRIES))
    for part in np.split(rows, np.unique(bounds)):
        if len(part):
            yield part


def _hits(items: IntArray, targets: sp.csr_matrix) -> float:
    """Sum over rows of |top items in the target basket| / |target basket|."""
    rows, k = items.shape
    hits = targets[np.repeat(np.arange(rows), k), np.where(items >= 0, items, 0).ravel()]
    hits = np.asarray(hits).reshape(rows, k) * (items >= 0)
    sizes = np.diff(targets.indptr)
    return float(np.sum(hits.sum(axis=1) / sizes))


def _repeat_share(
    customer: IntArray, age: IntArray, sizes: IntArray, repeat: sp.csr_matrix, prior: float
) -> tuple[FloatArray, float]:
    """Each customer's share of products bought before, over its second and later baskets, shrunk.

    ``repeat`` (any decay) has one entry per customer and distinct product bought.
    """
    n_customers = repeat.shape[0]
    lines = np.bincount(customer, weights=sizes, minlength=n_customers)
    distinct = np.diff(repeat.indptr).astype(np.float64)
    counts = np.bincount(customer, minlength=n_customers)
    first = np.zeros(n_customers)
    is_first = age == counts[customer] - 1
    first[customer[is_first]] = sizes[is_first]
    repeats = lines - distinct
    later = lines - first
    overall = float(repeats.sum() / later.sum()) if later.sum() > 0 else 0.5
    share = (repeats + prior * overall) / np.maximum(later + prior, 1e-12)
    share = np.where(later + prior > 0, share, overall)
    return share, overall


def _customer_indptr(customer: IntArray, basket: sp.csr_matrix, n_customers: int) -> IntArray:
    """Row pointer grouping basket lines by customer (baskets are sorted by customer)."""
    first_basket = np.searchsorted(customer, np.arange(n_customers + 1))
    return np.asarray(basket.indptr[first_basket], dtype=np.int64)


def _repeat_matrix(
    customer: IntArray, age: IntArray, basket: sp.csr_matrix, n_customers: int, decay: float
) -> sp.csr_matrix:
    """Rows sum to 1: decayed basket weights shared equally by each basket's products."""
    sizes = np.diff(basket.indptr)
    weight = np.power(decay, age.astype(np.float64))
    total = np.bincount(customer, weights=weight, minlength=n_customers)
    # Floored so that even a basket bought thousands of baskets ago keeps a positive weight.
    line = np.maximum(np.repeat(weight / sizes / total[customer], sizes), _FLOOR).astype(np.float32)
    repeat = sp.csr_matrix(
        (line, basket.indices.copy(), _customer_indptr(customer, basket, n_customers)),
        shape=(n_customers, basket.shape[1]),
    )
    repeat.sum_duplicates()
    return repeat


def _neighbours(basket: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each product's ``k`` nearest products by cosine of their basket columns; weights sum to 1 per row.

    The co-occurrence counts are taken a block of products at a time (``B.T @ B`` row
    blocks), each block reduced to its top ``k`` before the next, so the full products x
    products count matrix never exists.
    """
    n = basket.shape[1]
    by_product = basket.T.tocsr()
    counts = np.diff(by_product.indptr).astype(np.float64)
    # Pairs each product's row of B.T @ B touches: the sizes of the baskets holding it.
    pairs = by_product @ np.diff(basket.indptr).astype(np.float64)
    bounds = np.searchsorted(np.cumsum(pairs), np.arange(_BLOCK_PAIRS, pairs.sum(), _BLOCK_PAIRS))
    items = np.full((n, k), -1, dtype=np.int64)
    values = np.zeros((n, k))
    for part in np.split(np.arange(n), np.unique(bounds)):
        if not len(part):
            continue
        co = by_product[part[0] : part[-1] + 1] @ basket
        rows = np.repeat(part, np.diff(co.indptr))
        off_diagonal = rows != co.indices
        rows, cols = rows[off_diagonal] - part[0], co.indices[off_diagonal]
        cosine = co.data[off_diagonal] / np.sqrt(counts[rows + part[0]] * counts[cols])
        indptr = np.zeros(len(part) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=len(part)), out=indptr[1:])
        items[part], values[part] = _row_top_k(indptr, _low(cols), cosine.astype(np.float32), k, n)
    valid = items >= 0
    values = np.where(valid, values, 0.0)
    total = values.sum(axis=1, keepdims=True)
    values = np.divide(values, total, out=np.zeros_like(values), where=total > 0)
    keep = valid & (values > 0)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    together = sp.csr_matrix((values[keep].astype(np.float32), items[keep], indptr), shape=(n, n))
    together.sort_indices()
    return together


# ---------------------------------------------------------------------- ranking


class _Candidates:
    """The products worth scoring for some customers, with their scores.

    One sparse product gives, for every customer row, the union of its bought products
    and their neighbours with their scores: ``[a R | w (1 - a)(1 - m) R] @ [I ; T]``.
    Every other product scores only its popularity term, so the most popular of those
    (``extra``) complete the ranking exactly. Without a fixed ``explore_weight`` (the
    calibration tries several), the two parts are kept apart as the real and imaginary
    parts of complex values; with ``new_only``, bought products carry a huge repeat part
    that marks them for removal.
    """

    def __init__(
        self,
        repeat: sp.csr_matrix,
        share: FloatArray,
        together: sp.csr_matrix,
        popularity: FloatArray,
        ranked: IntArray,
        rank: IntArray,
        k: int,
        popularity_share: float,
        *,
        explore_weight: float | None = None,
        new_only: bool = False,
    ) -> None:
        n_products = repeat.shape[1]
        share = np.clip(share, 1e-6, 1.0)  # a bought product must keep a positive repeat part
        per_row = np.diff(repeat.indptr)
        kind = np.complex64 if explore_weight is None else np.float32
        explore = (1.0 - share) * (1.0 - popularity_share) * (1.0 if explore_weight is None else explore_weight)
        own = repeat.astype(kind)
        if new_only:
            own.data[:] = _MARK
        else:
            own.data *= np.repeat(share, per_row).astype(np.float32)
        others = repeat.astype(kind)
        others.data *= np.repeat(explore, per_row).astype(np.float32) * (1j if explore_weight is None else 1)
        left = sp.hstack([own, others], format="csr")
        right = sp.vstack([sp.identity(n_products, dtype=kind, format="csr"), together.astype(kind)], format="csr")
        both = left @ right
        self.indptr = np.asarray(both.indptr, dtype=np.int64)
        items = both.indices
        coef = (1.0 - share) * popularity_share
        term = np.repeat(coef.astype(np.float32), np.diff(self.indptr)) * popularity.astype(np.float32)[items]
        self.explore_weight = explore_weight
        if explore_weight is None:
            self.repeat_part = both.data.real
            self.rest = both.data.imag + term
        else:
            term *= np.float32(explore_weight)
            term += both.data
            self.values = term
            if new_only:
                self.values[self.values >= _MARK / 2] = np.nan
            else:
                items = self._prune(own, popularity, ranked, explore_weight * coef, items, k)
        self.low = _low(items)
        self.coef = coef
        self.popularity = popularity
        self.rank, self.k = rank, k
        self.extra = _first_uncovered(self.indptr, items, rank, ranked, k)

    def _prune(
        self,
        own: sp.csr_matrix,
        popularity: FloatArray,
        ranked: IntArray,
        coef: FloatArray,
        items: Any,
        k: int,
    ) -> Any:
        """Drop the candidates that cannot reach a row's top ``k``; return the items kept.

        Each row's ``k``-th best score is at least the ``k``-th best of two sets of ``k``
        products whose scores are known from below: the row's bought products (repeat
        part and popularity term) and the ``k`` most popular products (popularity term).
        Entries below that bound go; one that was a candidate and becomes an "extra"
        scores only its popularity term, which is lower still, so the ranking is unchanged.
        """
        floor = np.repeat(coef.astype(np.float32), np.diff(own.indptr)) * popularity.astype(np.float32)[own.indices]
        floor += own.data
        _, bought = _row_top_k(np.asarray(own.indptr, dtype=np.int64), _low(own.indices), floor, k, own.shape[1])
        bound = coef * popularity[ranked[min(k, len(ranked)) - 1]]
        bound = np.maximum(bound, np.where(np.isfinite(bought[:, -1]), bought[:, -1], 0.0))
        bound *= 1.0 - 1e-5  # room for float32 rounding: never drop a product of the top k
        keep = self.values >= np.repeat(bound.astype(np.float32), np.diff(self.indptr))
        kept = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(keep, out=kept[1:])
        self.indptr = kept[self.indptr]
        self.values = self.values[keep]
        return items[keep]

    def top(self, explore_weight: float) -> tuple[IntArray, FloatArray]:
        """Top ``k`` products per row (-1 where fewer exist) and their scores, best first."""
        k = self.k
        if self.explore_weight is None:
            values = self.repeat_part + np.float32(explore_weight) * self.rest
        else:
            assert explore_weight == self.explore_weight
            values = self.values
        items, best = _row_top_k(self.indptr, self.low, values, k, len(self.popularity))
        extra = self.extra
        coef = explore_weight * self.coef
        extra_values = np.where(extra >= 0, coef[:, None] * self.popularity[np.maximum(extra, 0)], -np.inf)
        all_items = np.concatenate([items, extra], axis=1)
        all_values = np.concatenate([best, extra_values], axis=1)
        tie = np.where(all_items >= 0, self.rank[np.maximum(all_items, 0)], len(self.rank))
        order = np.lexsort((tie, -all_values), axis=1)[:, :k]
        out_items = np.take_along_axis(all_items, order, axis=1)
        out_values = np.take_along_axis(all_values, order, axis=1)
        missing = ~np.isfinite(out_values)
        out_items[missing] = -1
        out_values[missing] = 0.0
        return out_items, out_values


_MARK = np.float32(2.0**100)  # above any score: the repeat part that marks a bought product


def _row_top_k(indptr: IntArray, low: Any, values: Any, k: int, n_columns: int) -> tuple[IntArray, FloatArray]:
    """The ``k`` largest entries of each CSR row, best first: (column, value), -1/-inf where fewer.

    ``low`` holds each entry's ``_low(column)``; ``values`` (float32, >= 0, NaN to skip an
    entry) go above it, so that each entry is one 64-bit key and one row sort orders by
    value, then by column downwards (on equal values the lower column wins); 0 is
    padding. Dense rows go through one rows x columns block, sparse ones through padded
    blocks grouped by length (at most twice as wide as their rows), so the work stays
    proportional to the entries.
    """
    rows = len(indptr) - 1
    keys = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    keys <<= np.uint64(32)
    keys |= low
    keys[np.isnan(values)] = 0
    lengths = np.diff(indptr)
    best = np.zeros((rows, k), dtype=np.uint64)
    if rows and len(keys) and rows * n_columns <= 3 * len(keys):
        block = np.zeros((rows, n_columns), dtype=np.uint64)
        block[np.repeat(np.arange(rows), lengths), (np.uint64(_LOW_TOP) - low).astype(np.int64)] = keys
        block.sort(axis=1)
        best[:, -min(k, n_columns) :] = block[:, -k:]
    elif rows and len(keys):
        padded = np.append(keys, np.uint64(0))
        width, lower = k, -1
        longest = int(lengths.max())
        while lower < longest:
            block_rows = np.flatnonzero((lengths > lower) & (lengths <= width))
            lower = upper = width
            width *= 2
            if len(block_rows) == 0:
                continue
            span = np.arange(upper)
            position = indptr[block_rows][:, None] + span
            position[span >= lengths[block_rows][:, None]] = len(keys)
            block = padded[position]
            block.sort(axis=1)
            best[block_rows] = block[:, -k:]
    best = best[:, ::-1]
    items = _LOW_TOP - (best & _LOW_TOP).astype(np.int64)
    scores = (best >> np.uint64(32)).astype(np.uint32).view(np.float32).astype(np.float64)
    padding = best == 0
    items[padding] = -1
    scores[padding] = -np.inf
    return items, scores


_LOW_TOP = 0xFFFFFFFF


def _low(columns: Any) -> Any:
    """The low half of the sort keys of ``_row_top_k``: larger for lower columns, never 0."""
    return np.uint64(_LOW_TOP) - np.asarray(columns, dtype=np.uint64)


def _first_uncovered(indptr: IntArray, items: Any, rank: IntArray, ranked: IntArray, k: int) -> IntArray:
    """Per row, the ``k`` most popular products not among the row's ``items`` (-1 if fewer).

    Only the entries among the most popular products matter: they are picked out once,
    then the window of popular products widens (2k, 8k, 32k...) only for the rows that
    cover most of it.
    """
    rows = len(indptr) - 1
    n = len(ranked)
    out = np.full((rows, k), -1, dtype=np.int64)
    cap = min(n, 128 * k)
    popular = rank < cap  # a table of one byte per product: a cheap lookup for every entry
    position = np.flatnonzero(popular[items])
    entry_rank = rank[np.asarray(items)[position]]
    entry_row = np.searchsorted(indptr, position, side="right") - 1
    todo = np.arange(rows)
    span = min(n, 2 * k)
    while len(todo):
        if span > cap:  # rows covering nearly all of the most popular: look at all their entries
            cap = n
            lengths = np.diff(indptr)[todo]
            entry_rank = rank[np.asarray(items)[_ranges(indptr[todo], lengths)]]
            entry_row = np.repeat(todo, lengths)
        local = np.full(rows, -1, dtype=np.int64)
        local[todo] = np.arange(len(todo))
        near = (entry_rank < span) & (local[entry_row] >= 0)
        free = np.ones((len(todo), span), dtype=bool)
        free[local[entry_row[near]], entry_rank[near]] = False
        enough = free.sum(axis=1) >= k if span < n else np.ones(len(todo), dtype=bool)
        f = free[enough]
        order = np.cumsum(f, axis=1)
        r, c = np.nonzero(f & (order <= k))
        out[todo[enough][r], order[r, c] - 1] = ranked[c]
        todo = todo[~enough]
        span = min(n, span * 4)
    return out


def _ranges(begin: IntArray, length: IntArray) -> IntArray:
    """Concatenated ``range(begin[i], begin[i] + length[i])``."""
    ends = np.cumsum(length)
    total = int(ends[-1]) if len(ends) else 0
    offsets: IntArray = np.asarray(begin, dtype=np.int64) - (ends - length)
    return np.arange(total, dtype=np.int64) + np.repeat(offsets, length)


# ---------------------------------------------------------------------- argument checks


def _check_real(
    name: str,
    value: Any,
    *,
    low: float,
    high: float = math.inf,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if open_low else value >= low) and (value < high if open_high else value <= high)
    if not ok:
        lo = f"> {low:g}" if open_low else f">= {low:g}"
        hi = "" if high == math.inf else (f" and < {high:g}" if open_high else f" and <= {high:g}")
        raise ValidationError(name, f"must be a number {lo}{hi}", value)


def _check_count(name: str, value: Any, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValidationError(name, f"must be a whole number >= {low}", value)
