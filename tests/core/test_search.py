"""``crmkit.search``: how text folds, and the range every store searches a prefix with."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crmkit.search import fold, prefix_end, words

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)


def test_spellings_of_one_name_fold_alike() -> None:
    for written in ("Ștefan Popescu", "Ştefan Popescu", "STEFAN  popescu", "ştefan-POPESCU", "Stefan_Popescu."):
        assert fold(written) == "stefan popescu", written
    assert words("POPESCU, Ștefan") == ("popescu", "stefan")
    assert fold("علي كريمي") == fold("علی کریمی")  # Arabic yeh and kaf, Persian yeh and keheh
    assert fold("Straße Łódź Ærø") == "strasse lodz aero"
    assert fold("ﬁona") == "fiona" and fold("  ,. ") == ""


@given(text=_TEXT, prefix=_TEXT)
def test_a_prefix_is_a_range_in_code_point_order(text: str, prefix: str) -> None:
    end = prefix_end(prefix)
    in_range = prefix <= text and (end is None or text < end)
    assert in_range == text.startswith(prefix)


def test_the_range_end_skips_surrogates_and_the_last_code_point() -> None:
    assert prefix_end("pop") == "poq"
    assert prefix_end("a\ud7ff") == "a\ue000"  # no store holds a lone surrogate
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None and prefix_end("") is None
