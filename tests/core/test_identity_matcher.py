"""crmkit.identity without a store: normalisers, similarity measures, the Matcher."""

from __future__ import annotations

import random
from typing import Any

import pytest

from crmkit import ValidationError
from crmkit.identity import Match, Matcher, _text, email_key, phone_key, prior_parameters
from crmkit.identity._text import damerau_within, fold, jaro_winkler, token_key

#: The measures with the ``identity`` extra (rapidfuzz) when it is installed, and the pure-Python ones.
MEASURES = [
    pytest.param((jaro_winkler, damerau_within), id="default"),
    pytest.param((_text.jaro_winkler_python, _text.damerau_within_python), id="pure-python"),
]


@pytest.mark.parametrize(
    ("number", "region", "e164"),
    [
        ("0721 234 567", "RO", "+40721234567"),
        ("+40 (721) 234-567", None, "+40721234567"),
        ("0040 721 234 567", "ES", "+40721234567"),
        ("612 34 56 78", "ES", "+34612345678"),
        ("+34 612 345 678", None, "+34612345678"),
        ("0912 345 6789", "IR", "+989123456789"),
        ("+98 912 345 6789", None, "+989123456789"),
        ("(212) 555-0100", "US", "+12125550100"),
        ("1 212 555 0100", "US", "+12125550100"),
    ],
)
def test_phone_numbers_in_national_and_international_forms_are_one_e164(
    number: str, region: str | None, e164: str
) -> None:
    assert phone_key(number, region=region) == e164


@pytest.mark.parametrize(
    ("number", "region", "field"),
    [
        ("0721", "RO", "phone"),
        ("0721 234 567", None, "region"),
        ("0721 234 567", "XX", "region"),
        ("+40 abc", None, "phone"),
    ],
)
def test_unreadable_phone_numbers_name_the_field(number: str, region: str | None, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        phone_key(number, region=region)
    assert caught.value.field == field


def test_email_keys_fold_case_trim_and_use_the_idna_domain() -> None:
    assert email_key("  Ana@Example.RO ") == "ana@example.ro"
    assert email_key("josé@bücher.de") == email_key("JOSÉ@xn--bcher-kva.DE") == "josé@xn--bcher-kva.de"
    assert email_key("A.Na+crm@GoogleMail.com") == "a.na+crm@googlemail.com"
    assert email_key("A.Na+crm@GoogleMail.com", provider_rules=True) == "ana@gmail.com"
    with pytest.raises(ValidationError):
        email_key("no-at-sign")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Ștefan Ionuț", "STEFAN IONUT"),
        ("Şerban Ţurcanu", "șerban țurcanu"),  # cedilla and comma-below forms
        ("José María", "jose maria"),
        ("علي", "علی"),  # Arabic and Persian yeh
        ("كريم", "کریم"),  # Arabic and Persian kaf (and yeh)
        ("محمد\u200cرضا", "محمد رضا"),  # zero-width non-joiner
        ("Ａｎａ", "ana"),  # full-width letters (NFKC)
    ],
)
def test_names_fold_to_one_form(a: str, b: str) -> None:
    assert fold(a) == fold(b)


def test_token_keys_make_compound_names_order_free() -> None:
    assert token_key(fold("Juan Carlos")) == token_key(fold("carlos  JUAN"))
    assert token_key(fold("Mohammad-Reza")) == token_key(fold("Reza Mohammad"))


@pytest.mark.parametrize("measures", MEASURES)
def test_jaro_winkler_textbook_values(measures: tuple[Any, Any]) -> None:
    jaro_winkler = measures[0]
    assert jaro_winkler("martha", "marhta") == pytest.approx(0.9611, abs=1e-4)
    assert jaro_winkler("dwayne", "duane") == pytest.approx(0.84, abs=1e-4)
    assert jaro_winkler("dixon", "dicksonx") == pytest.approx(0.8133, abs=1e-4)
    assert jaro_winkler("", "a") == 0.0 and jaro_winkler("abc", "abc") == 1.0


def _osa(s: str, t: str) -> int:
    d = [[0] * (len(t) + 1) for _ in range(len(s) + 1)]
    for i in range(len(s) + 1):
        d[i][0] = i
    for j in range(len(t) + 1):
        d[0][j] = j
    for i in range(1, len(s) + 1):
        for j in range(1, len(t) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (s[i - 1] != t[j - 1]))
            if i > 1 and j > 1 and s[i - 1] == t[j - 2] and s[i - 2] == t[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(s)][len(t)]


@pytest.mark.parametrize("measures", MEASURES)
def test_bounded_damerau_agrees_with_the_full_programme(measures: tuple[Any, Any]) -> None:
    damerau_within = measures[1]
    rng = random.Random(7)
    for _ in range(3000):
        s = "".join(rng.choice("abc") for _ in range(rng.randint(0, 7)))
        t = "".join(rng.choice("abc") for _ in range(rng.randint(0, 7)))
        for bound in (1, 2):
            assert damerau_within(s, t, bound) == min(_osa(s, t), bound + 1), (s, t, bound)


def test_compiled_and_pure_python_measures_agree() -> None:
    """With or without the identity extra, a pair compares alike (transpositions counted whole, as strcmp95 does)."""
    rng = random.Random(11)
    letters = "abcdeășțxyz "
    for _ in range(5000):
        s = "".join(rng.choice(letters) for _ in range(rng.randint(0, 12)))
        chars = list(s)
        for _ in range(rng.randint(1, 3)):
            if chars:
                chars[rng.randrange(len(chars))] = rng.choice(letters)
        t = "".join(chars) if rng.random() < 0.7 else "".join(rng.choice(letters) for _ in range(rng.randint(0, 12)))
        assert jaro_winkler(s, t) == pytest.approx(_text.jaro_winkler_python(s, t), abs=1e-12), (s, t)
        for bound in (1, 2):
            assert damerau_within(s, t, bound) == _text.damerau_within_python(s, t, bound), (s, t, bound)
    # an odd number of half-transpositions: 3 // 2 = 1 transposition
    assert _text.jaro_winkler_python("zeșeățaxț", "zeșeăcaxț") == pytest.approx(0.9306, abs=1e-4)


FIELDS = {"given_name": "name", "surname": "name", "postcode": "postcode", "date_of_birth": "date", "id": "identifier"}


def _people(n: int, seed: int) -> tuple[list[dict[str, str | None]], set[tuple[int, int]]]:
    """n people and a noisy copy of every third one (typos, swapped day and month, missing values)."""
    rng = random.Random(seed)
    given = ["ana", "ion", "maria", "elena", "andrei", "mihai", "ioana", "zahra", "reza", "juan", "carmen", "luis"]
    rows: list[dict[str, str | None]] = []
    for _ in range(n):
        rows.append(
            {
                "given_name": rng.choice(given),
                "surname": "".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3)),
                "postcode": f"{rng.randrange(100, 999)}",
                "date_of_birth": f"19{rng.randrange(40, 99)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}",
                "id": f"{rng.randrange(10**6, 10**7)}",
            }
        )
    truth = set()
    for k in range(0, n, 3):
        copy = dict(rows[k])
        s = copy["surname"] or ""
        p = rng.randrange(len(s) - 1)
        copy["surname"] = s[:p] + s[p + 1] + s[p] + s[p + 2 :]  # one transposition
        if rng.random() < 0.3:
            copy["postcode"] = None
        truth.add((k, len(rows)))
        rows.append(copy)
    return rows, truth


def test_deduplicate_finds_the_noisy_copies_by_em_without_labels() -> None:
    rows, truth = _people(900, seed=1)
    m = Matcher(FIELDS)
    found = m.deduplicate(rows)
    assert all(isinstance(x, Match) and x.i < x.j and x.probability >= m.threshold for x in found)
    pairs = {(x.i, x.j) for x in found}
    hits = len(pairs & truth)
    assert hits / len(truth) >= 0.97 and hits / len(pairs) >= 0.99
    assert m.parameters is not None and m.parameters.m["id"][-1] > 0.5  # learnt: true matches share ids


def test_link_indexes_left_and_right() -> None:
    rows, truth = _people(600, seed=2)
    left, right = rows[:600], rows[600:]
    links = Matcher(FIELDS).link(left, right)
    expected = {(i, j - 600) for i, j in truth}
    found = {(x.i, x.j) for x in links}
    assert len(found & expected) / len(expected) >= 0.97 and len(found & expected) / len(found) >= 0.99


def test_train_from_labels_fixes_the_model() -> None:
    rows, truth = _people(300, seed=3)
    m = Matcher(FIELDS)
    parameters = m.train(rows, sorted(truth)[:50])
    assert m.parameters is parameters and parameters.m["given_name"][-1] > 0.9
    assert len({(x.i, x.j) for x in m.deduplicate(rows)} & truth) >= 0.97 * len(truth)


def test_small_data_uses_the_prior_model() -> None:
    rows = [
        {"name": "Ana Pop", "email": "ana@x.ro"},
        {"name": "ana  POP", "email": "ana@x.ro"},
        {"name": "Ion", "email": None},
    ]
    m = Matcher({"name": "name", "email": "identifier"})
    assert [(x.i, x.j) for x in m.deduplicate(rows)] == [(0, 1)]
    assert m.parameters == prior_parameters({"name": "name", "email": "identifier"})
    assert m.explain(rows[0], rows[1]) == {"name": "same", "email": "same"}


def test_bad_configuration_names_the_field() -> None:
    for kwargs, field in (
        ({"fields": {"x": "colour"}}, "fields.x"),
        ({"fields": {}}, "fields"),
        ({"fields": {"x": "name"}, "threshold": 1.5}, "threshold"),
        ({"fields": {"x": "name"}, "blocking": [("y",)]}, "blocking"),
    ):
        with pytest.raises(ValidationError) as caught:
            Matcher(**kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field
    with pytest.raises(ValidationError) as caught:
        Matcher({"x": "name"}).deduplicate([{"x": "a"}, "not a mapping"])  # type: ignore[list-item]
    assert caught.value.row == 1
