"""The example notebooks that run offline execute from top to bottom; a failing cell fails the build."""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))


def runs_in_ci(path: Path) -> bool:
    return json.loads(path.read_text())["metadata"].get("anagram", {}).get("run_in_ci", True)


def test_every_example_says_whether_ci_runs_it():
    assert len(NOTEBOOKS) >= 4
    assert [p.name for p in NOTEBOOKS if not runs_in_ci(p)] == ["04_stable_diffusion_and_deepfloyd_if.ipynb"]


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if runs_in_ci(p)], ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors
