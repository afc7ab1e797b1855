"""``secmoe bench moe``: token-chunked execution, the records, cost-only runs, --plot, docs.

Tolerance of the chunked run against the float reference (``training._moe.moe_reference``
with the same "quad" GeLU and the 2Quad router): the FFN's fixed-point error is a few units
of ``2^-16`` times the fan-in (``d = 8``, ``f = 16`` terms of size ``|x| |w| ~ 1``), about
``1e-4``; the secure 2Quad gates are within ``2e-3`` of the float ones, times
``|FFN_e(x)| < 2`` for the benchmark's weights (``w_in ~ N(0, 1/d)``, ``w_out ~ N(0, 1/f)``)
and ``x ~ N(0, 1)``. So ``ATOL = 1e-2``. Chunked and unchunked runs use fresh material per
program, so they agree at that tolerance, not bit for bit. (The fused ``moe_layer`` against
the reference: ``test_moe.py``; one more whole-layer compile here would double this file's
time.) A capacity factor of 0.5
(C = 1 of T = 8 tokens per expert) makes later chunks drop tokens that are only dropped
because of earlier chunks' counts: a chunk that recounted the capacity would keep them.
"""

import json
import sys

import jax
import numpy as np
import pytest

import secmoe_jax as sm
from secmoe_jax.bench import _moe_bench as mb
from secmoe_jax.protocols import _moe

ATOL = 1e-2
TINY = dict(experts=[4], tokens=8, d_model=8, d_ff=16, top_k=1, gelu="quad", router="2quad")


def test_chunk_sizes():
    assert mb.chunk_sizes(128, 4) == [32] * 4
    assert mb.chunk_sizes(10, 3) == [4, 3, 3]
    with pytest.raises(ValueError, match="chunks"):
        mb.chunk_sizes(4, 5)
    with pytest.raises(ValueError, match="dispatch"):
        mb.ChunkedLayer(_moe.MoELayerConfig(experts=4, strategy="dispatch"), [4, 4])


def test_chunked_run_matches_reference_and_reports_the_unchunked_cost():
    (rec,) = mb.moe_records(
        strategies=["stc"], capacity_factor=0.5, repeats=1, chunks=2, seed=0, **TINY
    )
    fields = {
        "op",
        "variant",
        "shape",
        "online_bytes",
        "rounds",
        "offline_bytes",
        "seconds",
        "dealer_seconds",
        "max_abs_err",
        "strategy",
        "experts",
        "tokens",
        "d_model",
        "d_ff",
        "top_k",
        "capacity_factor",
        "capacity",
        "chunks",
        "chunk_tokens",
        "chunk_offline_bytes",
    }
    assert fields <= set(rec), fields - set(rec)
    assert (rec["chunks"], rec["chunk_tokens"], rec["capacity"]) == (2, [4, 4], 1)
    assert rec["seconds"] > 0 and rec["dealer_seconds"] > 0
    assert rec["max_abs_err"] < ATOL

    # the same inputs and programs again (compiled above): the concatenated output
    cfg = _moe.MoELayerConfig(
        experts=4, capacity_factor=0.5, strategy="stc", gelu="quad", router="2quad"
    )
    params, x, keys, weights, xs = mb.setup_inputs(4, 8, 8, 16, "gelu", 0)
    ref = mb._reference(x, params, cfg)
    qkeys = sm.DealerKeys(jax.random.key(5), keys.weights)
    ys = [
        sm.reveal(sm.Secret(mb.ChunkedLayer(cfg, sizes).run(xs.data, weights, qkeys)[0]))
        for sizes in ([4, 4], [8])  # chunked, and the same pieces unchunked (one chunk)
    ]
    dropped = np.all(ref == 0, axis=-1)
    assert dropped[4:].any()  # the second chunk drops tokens because of the first's counts
    for y in ys:
        np.testing.assert_allclose(y, ref, atol=ATOL)
        np.testing.assert_array_equal(y[dropped], 0.0)
    np.testing.assert_allclose(ys[0], ys[1], atol=ATOL)

    def layer(a, w, mat):
        return sm.Secret(_moe.moe_layer(a.data, w, mat, cfg=cfg))

    # bytes, rounds and material reported: the unchunked fused layer's, traced by cost()
    c = sm.cost(layer, xs, weights)
    assert (rec["online_bytes"], rec["rounds"], rec["offline_bytes"]) == (
        c.online_bytes,
        c.rounds,
        c.offline_bytes,
    )
    assert rec["chunk_offline_bytes"] < rec["offline_bytes"]


def test_cost_only_records_and_capacity_rounding():
    """cf = 1.25 at T = 128, d = 256, f = 1024: dispatch grows x1.69 from E = 8 to 128
    (E C = 160 -> 256, C rounded up per expert), the numbers the docstrings quote."""
    recs = mb.moe_records(
        experts=[8, 128],
        tokens=128,
        d_model=256,
        d_ff=1024,
        top_k=1,
        strategies=["dispatch"],
        capacity_factor=1.25,
        repeats=1,
        cost_only=True,
    )
    by = {r["experts"]: r for r in recs}
    assert all(r["seconds"] is None and r["cost_only"] for r in recs)
    assert [by[e]["capacity"] * e for e in (8, 128)] == [160, 256]
    assert (by[8]["online_bytes"], by[128]["online_bytes"]) == (44_349_632, 75_080_384)
    # (stc's bytes do not depend on C: test_moe.test_body_cost_closed_form)


def test_cli_cost_only_out_plot_from_json_and_docs(tmp_path, capsys, monkeypatch):
    from secmoe_jax import _report
    from secmoe_jax.cli import main

    # complexity.md traces every protocol (test_project covers it): not needed here
    monkeypatch.setattr(_report, "complexity_rows", lambda: [])

    out = tmp_path / "results" / "moe" / "tiny.json"
    out.parent.mkdir(parents=True)
    argv = ["bench", "moe", "--experts", "2,4", "--tokens", "8", "--d-model", "8"]
    argv += ["--d-ff", "16", "--strategy", "stc,dispatch,all", "--cost-only", "--out", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["meta"]["command"].startswith("secmoe bench moe --experts 2,4 --tokens 8")
    assert len(data["records"]) == 6

    png = tmp_path / "figures" / "moe_tiny.png"
    png.parent.mkdir()
    capsys.readouterr()
    assert main(["bench", "moe", "--from", str(out), "--plot", str(png), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == data["records"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # cost-only records have no seconds: plotting only seconds is an error, not a crash
    from secmoe_jax.bench._plot import plot_records

    with pytest.raises(ValueError, match="no record"):
        plot_records(data["records"], x="experts", ys=["seconds"], series="strategy", path=str(png))

    (tmp_path / "results" / "ops.json").write_text(
        json.dumps(
            [
                {
                    "op": "mul",
                    "variant": "x",
                    "shape": [2, 3],
                    "online_bytes": 96,
                    "rounds": 1,
                    "offline_bytes": 144,
                    "seconds": 0.1,
                    "dealer_seconds": 0.2,
                    "max_abs_err": 1e-5,
                }
            ]
        )
    )
    written = _report.write_docs(results_dir=str(tmp_path / "results"), out_dir=str(tmp_path))
    assert tmp_path / "benchmarks.md" in written
    bench = (tmp_path / "benchmarks.md").read_text()
    assert "| mul | x | 2×3 |" in bench  # the other result files still render
    assert "### moe/tiny" in bench and "| strategy | experts | C | online MB |" in bench
    stc4 = next(r for r in data["records"] if r["strategy"] == "stc" and r["experts"] == 4)
    assert f"| stc | 4 | 2 | {stc4['online_bytes'] / 1e6:.2f} | {stc4['rounds']} |" in bench
    assert "Growth from E = 2 to E = 4: stc: online bytes ×" in bench
    assert "![moe/tiny](figures/moe_tiny.png)" in bench


def test_plot_without_matplotlib_names_the_install(tmp_path, monkeypatch, capsys):
    from secmoe_jax.cli import main

    res = tmp_path / "r.json"
    res.write_text(json.dumps([{"strategy": "stc", "experts": 2, "online_bytes": 1, "rounds": 1}]))
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert main(["bench", "moe", "--from", str(res), "--plot", str(tmp_path / "p.png")]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err
