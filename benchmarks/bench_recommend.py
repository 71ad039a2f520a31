"""Benchmark ``crmkit.value.recommend.NextPurchase``: fit plus top-10 for every customer.

From the repository root, in the project virtualenv (numpy and scipy, the ``models`` extra):

    python benchmarks/bench_recommend.py                 # 5,000 x 300 and 1,000,000 x 10,000
    python benchmarks/bench_recommend.py --small-only    # 5,000 x 300 only, a few seconds

The baskets come from ``crmkit.value.datasets.simulate_baskets`` (seeded), as the list of
``(customer, occurred_at, products)`` triples a caller would hand to ``fit``; building
that list is not timed. Timed, each the best of ``--repeat`` runs (default 3, the large
case once):

* crmkit: ``NextPurchase().fit(history)`` then ``recommend_many(None, k=10)`` (a dict of
  ten ``(product, score)`` pairs for every customer);
* peer: global popularity, the least any recommender does with the same input and
  output: count the products of every basket with ``collections.Counter`` and give every
  customer the ten most popular;
* second peer, for the ranking step alone: the straightforward numpy way to take the
  top 10 of the same fitted model, every product's score in a dense customers x products
  block (the sparse repeat and co-occurrence products turned dense, the popularity term
  added) and ``argpartition``. For the large case it runs on the first
  ``--dense-customers`` customers (default 20,000) and is scaled to all of them.

Quality on the held-out last baskets (Recall@10; on a sample of customers for the large
case): crmkit, popularity and the simulator's oracle, and for products the customer
never bought, crmkit against the popularity ranking of those products.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import platform
import resource
import sys
import time
from typing import Any

import numpy as np
import scipy

from crmkit.value.datasets import BasketSimulation, simulate_baskets
from crmkit.value.recommend import NextPurchase


def popularity_peer(history: list[Any], k: int) -> dict[Any, list[tuple[Any, float]]]:
    counts: collections.Counter[Any] = collections.Counter()
    customers: dict[Any, None] = {}
    for customer, _, products in history:
        counts.update(set(products))
        customers[customer] = None
    total = sum(counts.values())
    top = [(product, n / total) for product, n in counts.most_common(k)]
    return {customer: list(top) for customer in customers}


def dense_top10(model: NextPurchase, rows: int, block: int = 2000) -> float:
    """Seconds for the dense top 10 of the first ``rows`` fitted customers (the same scores as crmkit's)."""
    m = model._model  # the fitted matrices
    assert m is not None
    explore = m.explore_weight * (1.0 - np.clip(m.share, 1e-6, 1.0))
    share = np.clip(m.share, 1e-6, 1.0)
    start = time.perf_counter()
    for begin in range(0, rows, block):
        part = slice(begin, min(rows, begin + block))
        repeat = m.repeat[part]
        scores = (repeat @ m.together).toarray() * (1.0 - m.popularity_share)
        scores += m.popularity_share * m.popularity
        scores *= explore[part, None]
        scores += share[part, None] * repeat.toarray()
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        np.take_along_axis(scores, top, axis=1).argsort(axis=1)
    return time.perf_counter() - start


def timed(fn: Any, repeat: int) -> tuple[float, float, Any]:
    """Best wall time, the CPU time of that run (this process), and the result."""
    best, cpu, kept = float("inf"), float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall = time.perf_counter() - start
        if wall < best:
            best, cpu, kept = wall, time.process_time() - start_cpu, out
        del out
    return best, cpu, kept


def crmkit_run(history: list[Any], k: int) -> tuple[NextPurchase, dict[Any, Any], float]:
    start = time.perf_counter()
    model = NextPurchase().fit(history)
    fitted = time.perf_counter() - start
    return model, model.recommend_many(None, k), fitted


def quality(
    sim: BasketSimulation, model: NextPurchase, peer: dict[Any, Any], sample: int, seed: int
) -> dict[str, float]:
    customers = sorted(sim.held_out)
    if len(customers) > sample:
        rng = np.random.default_rng(seed)
        customers = sorted(rng.choice(customers, sample, replace=False).tolist())
    held = {c: sim.held_out[c] for c in customers}
    part = BasketSimulation(sim.history[:0], [b for b in sim.last_baskets if b[0] in held], sim.oracle, sim._bought)
    ours = model.recommend_many(customers, 10)
    oracle = sim.oracle.recommend_many(customers, 10)
    ours_new = model.recommend_many(customers, 10, new_only=True)
    ranked = [p for p, _ in collections.Counter(p for _, _, ps in sim.history for p in set(ps)).most_common()]
    popular_new = {}
    for c in customers:
        bought = sim.bought_before(c)
        popular_new[c] = [p for p in ranked[: 10 + len(bought)] if p not in bought][:10]
    return {
        "customers": float(len(customers)),
        "recall_crmkit": part.recall(ours),
        "recall_popularity": part.recall({c: peer[c] for c in customers if c in peer}),
        "recall_oracle": part.recall(oracle),
        "new_recall_crmkit": part.recall(ours_new, new_only=True),
        "new_recall_popularity": part.recall(popular_new, new_only=True),
    }


def case(customers: int, products: int, repeat: int, seed: int, dense_customers: int, **shape: Any) -> None:
    t0 = time.perf_counter()
    sim = simulate_baskets(customers, products, seed=seed, **shape)
    lines = sum(len(b[2]) for b in sim.history)
    print(
        f"\n{customers:,} customers x {products:,} products: {len(sim.history):,} baskets, {lines:,} line items "
        f"(simulated in {time.perf_counter() - t0:.1f} s; shape {shape or 'default'})"
    )
    load = os.getloadavg()[0]
    ours_time, ours_cpu, (model, ours, fit_time) = timed(lambda: crmkit_run(sim.history, 10), repeat)
    peer_time, peer_cpu, peer = timed(lambda: popularity_peer(sim.history, 10), repeat)
    assert len(ours) == len(peer), (len(ours), len(peer))
    print(f"  load average before: {load:.1f} (2 cores); wall-clock times, this process's CPU time in brackets")
    print(
        f"  crmkit NextPurchase fit + top-10 for all: {ours_time:8.2f} s ({ours_cpu:.2f} s CPU; fit {fit_time:.2f} s)"
        f" params {model.params}"
    )
    print(
        f"  peer: global popularity (Counter):        {peer_time:8.2f} s ({peer_cpu:.2f} s CPU)"
        f"   ratio {ours_time / peer_time:.2f}x wall, {ours_cpu / peer_cpu:.2f}x CPU"
    )
    rows = min(dense_customers, customers)
    dense = min(dense_top10(model, rows) for _ in range(repeat)) * customers / rows
    top_time = ours_time - fit_time
    scaled = "" if rows == customers else f", measured on {rows:,} customers and scaled"
    print(
        f"  top-10 step alone: crmkit {top_time:.2f} s; dense numpy {dense:.2f} s{scaled}"
        f"   ratio {top_time / dense:.2f}x"
    )
    q = quality(sim, model, peer, 20_000, seed)
    print(
        f"  Recall@10 on {int(q['customers']):,} held-out baskets: crmkit {q['recall_crmkit']:.4f}, "
        f"popularity {q['recall_popularity']:.4f}, oracle {q['recall_oracle']:.4f} "
        f"(crmkit/oracle {q['recall_crmkit'] / q['recall_oracle']:.3f})"
    )
    print(
        f"  new products only: crmkit {q['new_recall_crmkit']:.4f}, popularity {q['new_recall_popularity']:.4f} "
        f"({q['new_recall_crmkit'] / q['new_recall_popularity'] - 1:+.0%})"
    )
    print(f"  peak memory of the process so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-only", action="store_true", help="only 5,000 customers x 300 products")
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers of the large case")
    parser.add_argument("--products", type=int, default=10_000, help="products of the large case")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the small case (best is kept)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dense-customers", type=int, default=20_000, help="customers ranked by the dense peer")
    args = parser.parse_args(argv)
    print(
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, {platform.machine()}"
    )
    case(5000, 300, args.repeat, args.seed, args.dense_customers)
    if not args.small_only:
        # Larger catalogue: 100 categories of about 100 products; 1 to 9 baskets before the held-out one.
        case(args.customers, args.products, 1, args.seed, args.dense_customers, categories=100, baskets=(1, 9))


if __name__ == "__main__":
    sys.exit(main())
