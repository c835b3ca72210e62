from __future__ import annotations

import pytest

from dkan.config import authors_defaults
from sweeps.space import DEFAULT_SPACE, Range, SearchSpaceError, first_points, load_space, to_optuna


def test_default_space_matches_the_issue_and_starts_at_the_authors_values():
    assert DEFAULT_SPACE["fka_weight"] == Range(0.01, 10.0, True) and DEFAULT_SPACE["lka_weight"] == Range(
        0.001, 1.0, True
    )
    assert DEFAULT_SPACE["fka_tau"] == Range(1.0, 10.0) and DEFAULT_SPACE["lka_tau"] == Range(1.0, 10.0)
    assert first_points(DEFAULT_SPACE) == [authors_defaults(1)]
    dist = to_optuna(DEFAULT_SPACE)
    assert dist["fka_weight"].log and dist["lka_tau"].low == 1.0


def test_file_overrides_some_ranges(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("fka_tau: {low: 2, high: 4}\n")
    space = load_space(f)
    assert space["fka_tau"] == Range(2.0, 4.0) and space["lka_tau"] == DEFAULT_SPACE["lka_tau"]
    assert first_points(space)[0]["fka_tau"] == 4.0  # the authors' 5 clipped into [2, 4]


@pytest.mark.parametrize(
    "text, match",
    [
        ("fka_temp: {low: 1, high: 2}\n", r"unknown parameter\(s\) \['fka_temp'\]"),
        ("fka_tau: {low: 5, high: 1}\n", "inverted or empty bounds"),
        ("lka_weight: {low: 0, high: 1, log: true}\n", "log range needs low > 0"),
        ("fka_tau: {low: a, high: 2}\n", "must be numbers"), ("fka_tau: 3\n", r"must be \{low: L, high: H\}"),
        ("- 1\n", "expected a mapping"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(SearchSpaceError, match=match):
        load_space(f)
    with pytest.raises(SearchSpaceError, match="not found"):
        load_space(tmp_path / "none.yaml")
