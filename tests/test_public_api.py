"""The stable public surface (shared/design/layout.md): names users and plug-ins rely on stay put."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest


def test_pipelines_from_the_package_face():
    from diffusers import DiffusionPipeline
    from diffusers.utils import BaseOutput

    import anagram
    from anagram import AnagramPipeline, AnagramPipelineOutput, IFAnagramPipeline, IFSuperResolutionAnagramPipeline

    for cls in (AnagramPipeline, IFAnagramPipeline, IFSuperResolutionAnagramPipeline):
        assert issubclass(cls, DiffusionPipeline)
    assert issubclass(AnagramPipelineOutput, BaseOutput)
    assert set(anagram.__all__) >= {"AnagramPipeline", "AnagramPipelineOutput", "IFAnagramPipeline",
                                    "IFSuperResolutionAnagramPipeline", "__version__"}
    assert anagram.__version__ == metadata.version("anagram")
    with pytest.raises(AttributeError):
        anagram.NoSuchThing  # noqa: B018


def test_views_plugin_api():
    import anagram.views as views

    for name in ("View", "ViewError", "PermutationView", "FactorizedView", "get_view", "parse_view", "available",
                 "register_view", "describe", "from_config", "view_class", "load_entry_points", "split_views",
                 "PIXEL", "LATENT"):
        assert hasattr(views, name), name
    assert views.ENTRY_POINT_GROUP == "anagram.views"
    assert {"identity", "rotate_180", "flip", "jigsaw", "inner_circle"} <= set(views.available())


def test_method_switches():
    from anagram.method import AntiSegregation, MultiTask

    method = MultiTask()
    assert method.balance and method.rectify == "bounded" and isinstance(method.anti_segregation, AntiSegregation)
    assert MultiTask(**method.to_dict()) == method


def test_console_script_and_module_entry():
    scripts = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
    assert scripts["anagram"] == "anagram.cli:app"
    done = subprocess.run([sys.executable, "-m", "anagram.cli", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"anagram {metadata.version('anagram')}"


def test_testbed_model_folder():
    from anagram.testbed import DIGITS_MODEL_DIR

    assert (DIGITS_MODEL_DIR / "model_index.json").is_file()


@pytest.mark.parametrize("module", ["anagram", "anagram.views", "anagram.cli", "anagram.outputs.records"])
def test_light_modules_do_not_import_diffusers_pipelines_or_transformers(module):
    code = (f"import sys, {module}\n"
            "heavy = sorted(m for m in sys.modules if m == 'transformers' or m.startswith(('transformers.', "
            "'diffusers.pipelines')))\n"
            "print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"import {module} loaded {done.stdout.strip()}"
