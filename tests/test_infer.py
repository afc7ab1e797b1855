"""Private inference from text: `secmoe demo`, `infer`, `eval` on a small checkpoint."""

import json

import numpy as np
import pytest
from flax import nnx

from secmoe_jax import assets, cli
from secmoe_jax._cli_infer import DEMO_TEXTS
from secmoe_jax.secure import SecureModel, bucket_length, eval_batches, evaluate
from secmoe_jax.training import Encoder, Tokenizer, prune_vocab, save_checkpoint, tiny
from secmoe_jax.training._checkpoint import flat_to_model, params_to_flat

TEXTS = list(DEMO_TEXTS) + ["good", "bad movie", "a film", "not good at all, really"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 1-layer pruned-vocabulary student with float16 weights and confident logits."""
    ids, _ = Tokenizer(32).encode(TEXTS)
    vocab_map = prune_vocab([ids], 30522)
    cfg = tiny(vocab_size=len(vocab_map)).replace(
        hidden=16, heads=2, ffn=32, layers=1, gelu="secmoe6", softmax="2quad"
    )
    flat = params_to_flat(Encoder(cfg, rngs=nnx.Rngs(3)))
    flat["classifier/kernel"] = flat["classifier/kernel"] * 20.0  # clear margins
    model = flat_to_model(cfg, flat)
    path = tmp_path_factory.mktemp("ckpt") / "model.npz"
    save_checkpoint(
        path,
        model,
        tokenizer_max_len=32,
        label_names=("rotten", "fresh"),
        vocab_map=vocab_map,
        dtype="float16",
        extra={"student": "test"},
    )
    return path


@pytest.fixture(scope="module")
def secure(checkpoint):
    """One deployment shared by the tests: every distinct (batch, length) compiles once."""
    return SecureModel.from_checkpoint(str(checkpoint))


def test_bucket_length():
    assert [bucket_length(n, 64) for n in (1, 16, 17, 33, 64, 90)] == [16, 16, 32, 48, 64, 64]


def test_eval_batches_group_by_bucket_and_cap_tokens():
    lengths = np.array([40, 3, 17, 5, 33, 20, 64, 2])
    plan = eval_batches(lengths, 2, 64)
    assert [(list(i), t, n) for i, t, n in plan] == [
        ([7, 1], 16, 2),
        ([3], 16, 2),  # a bucket's last batch: filled up to its size by the caller
        ([2, 5], 32, 2),
        ([4, 0], 48, 2),
        ([6], 64, 2),
    ]
    capped = eval_batches(lengths, 2, 64, max_batch_tokens=64)
    assert [(t, n) for _, t, n in capped] == [(16, 2), (16, 2), (32, 2), (48, 1), (48, 1), (64, 1)]
    assert sorted(np.concatenate([i for i, _, _ in capped])) == list(range(8))
    assert [n for _, _, n in eval_batches(lengths, 4, 64, max_batch_tokens=1)] == [1] * 8
    with pytest.raises(ValueError, match="batch_size"):
        eval_batches(lengths, 0, 64)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        eval_batches(lengths, 2, 64, max_batch_tokens=0)


def test_classify_matches_plaintext(secure):
    model = secure
    preds = model.classify(TEXTS[:4])
    assert [p["text"] for p in preds] == TEXTS[:4]
    for p in preds:
        assert p["label"] in ("rotten", "fresh")
        # one layer of fixed-point ops: ~1e-3 absolute on logits of size ~10
        assert p["max_logit_diff"] < 2e-2
        assert p["agree"]
    with pytest.raises(ValueError, match="non-empty"):
        model.encode(["fine", "  "])
    with pytest.raises(TypeError, match="list of texts"):
        model.encode("a single string")


def test_evaluate_reports_accuracy_and_cost(secure):
    model = secure
    labels = [1, 0, 1, 0, 1, 0, 1]
    seen, parts = [], []
    res = evaluate(
        model, TEXTS[:7], labels, batch_size=4, progress=seen.append, partial=parts.append
    )
    assert sum(seen) == 7 and res["batches"] == 2 and res["examples"] == 7
    assert res["complete"] and res["computed_examples"] == 8 and res["peak_rss_gb"] > 0
    # after the first bucket (the 4 shortest texts): a partial report of those alone
    assert len(parts) == 1 and not parts[0]["complete"] and parts[0]["examples"] == 4
    assert parts[0]["batches"] == 1 and parts[0]["agreement"] == 1.0
    # each finished bucket's programs were freed: nothing compiled is left behind
    assert not model.program._plans and model.program._online_jit._cache_size() == 0
    assert res["agreement"] == 1.0
    assert res["private_accuracy"] == res["plaintext_accuracy"]
    assert 0.0 <= res["private_accuracy"] <= 1.0
    # batches of the sorted lengths: 4 short texts (16 tokens), then 3 long ones + a filler
    _, mask = model.encode(TEXTS[:7])
    lengths = np.sort(mask.sum(1))
    shapes = [(4, bucket_length(lengths[3], 32)), (4, bucket_length(lengths[6], 32))]
    costs = [model.cost(*s) for s in shapes]
    assert res["rounds"] == max(c.rounds for c in costs)
    per_example = sum(c.online_bytes for c in costs) / 8
    assert res["online_bytes_per_example"] == pytest.approx(per_example)
    assert res["seconds_per_example"] > 0
    assert (res["embedding"], res["gelu_strategy"]) == (model.opts.embedding, "stc")
    assert res["moe_strategy"] == (model.opts.moe_strategy if model.cfg.moe else None)
    with pytest.raises(ValueError, match="labels"):
        evaluate(model, TEXTS[:2], [0], batch_size=2)


def test_cli_infer_and_demo_json(checkpoint, secure, capsys, monkeypatch, tmp_path):
    from secmoe_jax import _cli_infer

    def load(args):  # the module's deployment (same shapes: no recompilation)
        assert args.checkpoint == str(checkpoint)
        secure.setup_seconds, secure.path = 0.0, args.checkpoint
        return secure

    monkeypatch.setattr(_cli_infer, "_load", load)
    argv = ["infer", "--checkpoint", str(checkpoint), "--json"]
    rc = cli.main(argv + sum((["--text", t] for t in TEXTS[:4]), []))
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and rep["all_agree"] and len(rep["predictions"]) == 4
    assert rep["rounds"] > 0 and rep["online_mb"] > 0 and rep["wan_seconds"] > rep["seconds"]
    rc = cli.main(["demo", "--checkpoint", str(checkpoint)])
    out = capsys.readouterr().out
    assert rc == 0 and "plaintext check: all predictions agree" in out and "rounds" in out
    assert "compilation" in out and "total with setup" in out
    assert cli.main(["infer", "--checkpoint", str(checkpoint)]) == 2
    # the demo's JSON record becomes the demo section of docs/inference.md
    assert cli.main(["demo", "--checkpoint", str(checkpoint), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["compile_seconds"] == 0.0 or rep["compile_seconds"] < rep["total_seconds"]
    res = tmp_path / "results"
    res.mkdir()
    (res / "demo.json").write_text(json.dumps(rep))
    assert cli.main(["docs", "--results", str(res), "--out", str(tmp_path)]) == 0
    doc = (tmp_path / "inference.md").read_text()
    assert "## The demo (`secmoe demo`)" in doc
    assert f"| {rep['online_mb']:.1f} | {rep['rounds']} |" in doc


def test_embedded_demo_model_is_small_and_loads():
    path = assets.default_model_path()
    assert path.stat().st_size <= 8 * 2**20
    model = SecureModel.from_checkpoint(str(path))
    assert model.cfg.layers == 2 and model.cfg.softmax == "2quad"
    assert model.vocab_map is not None and len(model.label_names) == 2
    ids, mask = model.encode(list(DEMO_TEXTS))
    assert ids.shape == mask.shape and ids.shape[1] % 16 == 0
    assert np.all(ids < model.cfg.vocab_size)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from secmoe_jax.training import CheckpointError

    with pytest.raises(CheckpointError, match="does not exist"):
        cli.main(["infer", "--checkpoint", str(tmp_path / "nope.npz"), "--text", "hi"])


@pytest.mark.parametrize("argv", [["demo"], ["infer"], ["eval"], ["bench", "model"]])
def test_inference_commands_have_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--help"])
    assert exc.value.code == 0 and "usage: secmoe" in capsys.readouterr().out


def test_bench_model_tiny_records(tmp_path, capsys):
    out = tmp_path / "m.json"
    argv = ["bench", "model", "--preset", "tiny", "--variant", "mpc-friendly"]
    argv += ["--repeats", "1", "--json", "--out", str(out)]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == json.loads(out.read_text())
    recs = doc["records"]
    assert len(recs) == 1
    for r in recs:
        assert r["preset"] == "tiny" and r["softmax"] == "2quad" and r["experts"] == 0
        assert r["online_bytes"] > 0 and r["rounds"] > 0 and r["seconds"] > 0
        assert r["max_abs_err"] < 5e-2  # logits of a random 1-layer model, fixed point
    with pytest.raises(ValueError, match="unknown preset"):
        from secmoe_jax.bench._model_bench import model_records

        model_records("nope")


def test_cli_eval_writes_its_report(checkpoint, secure, capsys, monkeypatch, tmp_path):
    from secmoe_jax import _cli_infer

    def load(args):
        secure.setup_seconds, secure.path = 0.0, args.checkpoint
        return secure

    monkeypatch.setattr(_cli_infer, "_load", load)
    data = tmp_path / "data.jsonl"
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS * 2)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "eval.json"
    argv = ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--split", "train"]
    argv += ["--private", "--batch-size", "4", "--max-batch-tokens", "64", "--quiet"]
    assert cli.main(argv + ["--json", "--out", str(out)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep == json.loads(out.read_text())
    assert rep["complete"] and rep["agreement"] == 1.0 and rep["max_batch_tokens"] == 64
    assert rep["examples"] > 8 and rep["student"] == "test"
    with pytest.raises(SystemExit):
        cli.main(argv + ["--max-batch-tokens", "0"])
    assert "positive integer" in capsys.readouterr().err
    # the report becomes a row of docs/inference.md's accuracy table; partial runs are marked
    res = tmp_path / "results"
    (res / "eval").mkdir(parents=True)
    (res / "eval" / "full.json").write_text(json.dumps(rep))
    (res / "eval" / "stopped.json").write_text(json.dumps({**rep, "complete": False}))
    assert cli.main(["docs", "--results", str(res), "--out", str(tmp_path)]) == 0
    rows = [r for r in (tmp_path / "inference.md").read_text().splitlines() if "| test |" in r]
    assert len(rows) == 2 and "| 4, ≤ 64 tokens |" in rows[0]
    assert f"| {rep['examples']} |" in rows[0] and f"| {rep['examples']} (partial) |" in rows[1]
