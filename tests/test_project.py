"""The project around the code: README example, CLI help, packaging layout, docs generation."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Example\n\n```python\n(.*?)```", text, re.S).group(1)
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, check=True)
    assert "[[0.25" in out.stdout and "rounds=2" in out.stdout


def test_readme_opens_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert first[0].startswith("bash scripts/install.sh && secmoe demo")
    assert "pytest" in first[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/install.sh --dev" in ci and "pytest" in ci


@pytest.mark.parametrize(
    "argv",
    [[], ["doctor"], ["bench"], ["bench", "ops"], ["bench", "moe"], ["docs"], ["train"]],
)
def test_every_command_has_help(argv, capsys):
    from secmoe_jax.cli import main

    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: secmoe" in capsys.readouterr().out


def test_bench_ops_small_json(tmp_path, capsys):
    from secmoe_jax.cli import main

    out = tmp_path / "ops.json"
    assert (
        main(
            [
                "bench",
                "ops",
                "--small",
                "--ops",
                "mul,trunc",
                "--repeats",
                "1",
                "--json",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    records = json.loads(capsys.readouterr().out)
    assert records == json.loads(out.read_text())
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
    }
    assert all(fields <= set(r) for r in records)
    assert {(r["op"], r["variant"]) for r in records} >= {
        ("mul", "trunc=none"),
        ("trunc", "dealer"),
    }
    assert all(r["max_abs_err"] < 1e-3 for r in records)
    assert main(["bench", "ops", "--ops", "nope"]) == 2


def test_docs_are_generated_from_json_and_costs(tmp_path):
    from secmoe_jax.cli import main

    res = tmp_path / "results"
    res.mkdir()
    rec = {
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
    (res / "ops.json").write_text(json.dumps([rec]))
    assert main(["docs", "--results", str(res), "--out", str(tmp_path)]) == 0
    bench = (tmp_path / "benchmarks.md").read_text()
    assert "| mul | x | 2×3 |" in bench
    comp = (tmp_path / "complexity.md").read_text()
    assert "| matmul | secret x secret | 128×768 · 768×3072 | 1 | 19.661 |" in comp


def test_doctor_json(capsys):
    from secmoe_jax.cli import main

    assert main(["doctor", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["x64"]["uint64_inside_scope"] is True
    assert all(r["passed"] for r in rep["ring_matmul_self_test"].values())


def test_plain_wheel_has_the_design_card_layout(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    import zipfile

    wheel = next(tmp_path.glob("secmoe_jax-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in (
        "secmoe_jax/kernels/_ring.py",
        "secmoe_jax/training/__init__.py",
        "secmoe_jax/protocols/_arith.py",
        "secmoe_jax/cli.py",
    ):
        assert must in names
    assert not any(n.startswith(("kernels/", "training/")) for n in names)
