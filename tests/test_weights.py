"""The weights registry, its one loader and the model cache, on the real default models."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import torch
from johnson_format import write_published_style_checkpoint
from safetensors.torch import load_file, save_file

from partialstyle.errors import ModelMissingError
from partialstyle.segment.classes import COCO_CLASSES
from partialstyle.segment.selfie import VARIANTS
from partialstyle.style.names import MULTISTYLE_NAMES, NUM_MULTISTYLE
from partialstyle.weights import files
from partialstyle.weights.load import load_weights
from partialstyle.weights.model_cache import ModelCache
from partialstyle.weights.registry import WEIGHTS, weights_named

DEFAULT_MODELS = ("multistyle26", "arbitrary", "selfie", "selfie-landscape")


def test_every_default_model_has_an_entry_and_every_file_entry_a_manifest_row():
    assert set(DEFAULT_MODELS) == set(files.manifest())
    for name, weights in WEIGHTS.items():
        assert weights.name == name
        if weights.file:
            row = weights.provenance
            assert row.file == weights.file and weights.license == row.license
        else:
            assert weights.license  # files that come from elsewhere still say their license


def test_metadata_is_the_projects_own():
    multistyle = WEIGHTS["multistyle26"].meta
    assert multistyle["num_styles"] == NUM_MULTISTYLE == len(MULTISTYLE_NAMES)
    assert multistyle["style_names"] is MULTISTYLE_NAMES
    assert WEIGHTS["yolact"].meta["classes"] is COCO_CLASSES
    for variant, size in VARIANTS.items():
        assert WEIGHTS[variant].input.size == size and WEIGHTS[variant].variant == variant


def test_registry_imports_no_torch():
    """The OBS settings read the registry inside OBS, which has no torch."""
    code = (
        "import sys; import partialstyle.weights, partialstyle.weights.registry; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.usefixtures("default_models")
@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_loader_reads_every_tensor_of_the_file(name):
    network = load_weights(name)
    saved = load_file(str(files.model_path(name)))
    if name == "multistyle26":  # the fast network keeps the same names, conv weights cast
        assert network.compute_dtype in (torch.float32, torch.bfloat16)
    assert not network.training
    # On the CPU the selfie networks come wrapped to run in onnxruntime, their torch network
    # (whose weights these are) inside.
    state = getattr(network, "network", network).state_dict()
    assert set(state) == set(saved)
    for key, tensor in saved.items():
        assert torch.equal(state[key].float(), tensor.float().to(state[key].dtype).float()), key
    assert not network.training


@pytest.mark.usefixtures("default_models")
def test_a_file_of_another_variant_is_refused(tmp_path):
    landscape = tmp_path / "landscape.safetensors"
    landscape.write_bytes(files.model_path("selfie-landscape").read_bytes())
    with pytest.raises(ModelMissingError) as error:
        load_weights("selfie", landscape)
    message = str(error.value)
    assert "declares 'selfie-landscape', expected 'selfie'" in message
    assert str(landscape) in message and "partialstyle models prepare" in message


def test_errors_are_one_line_naming_file_and_fix(tmp_path):
    missing = tmp_path / "missing.pth"
    wrong = tmp_path / "wrong.safetensors"
    save_file({"conv.weight": torch.zeros(2, 2)}, str(wrong), metadata={"variant": "selfie"})
    cases = [("johnson", missing, "partialstyle models fetch johnson"), ("selfie", wrong, None)]
    for name, path, fix in cases:
        with pytest.raises(ModelMissingError) as error:
            load_weights(name, path)
        message = str(error.value)
        assert "\n" not in message and str(path) in message
        assert (fix or WEIGHTS[name].fix) in message


def test_unknown_names_and_options_are_refused(tmp_path):
    with pytest.raises(Exception, match="unknown network 'nope'; known networks: multistyle26"):
        weights_named("nope")
    with pytest.raises(TypeError, match="yolact takes no option precision"):
        load_weights("yolact", tmp_path / "x.pth", precision="fp32")


def test_cache_loads_once_per_file_and_device_under_concurrent_first_use(tmp_path):
    checkpoint = write_published_style_checkpoint(tmp_path / "candy.pth")
    cache = ModelCache()
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.load_johnson(str(checkpoint), "cpu")))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(network is results[0] for network in results)
    assert list(cache.loaded().values()) == [results[0]]
    assert ModelCache().loaded() == {}  # another cache holds its own networks
