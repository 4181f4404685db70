"""The embedded GGUF models in the Hugging Face layout, for fast loading on another machine.

transformers reads a GGUF file slowly: it parses the file's whole vocabulary and
tensor-name tables in Python, again for the tokenizer, the config and the
weights (72 s for Gemma-3-270M's tokenizer alone on this project's 2-core CPU;
601 s for the four embedded models loaded at once on a 16-core GPU machine).
An export does that once: :func:`export_model` dequantises a verified GGUF file
and writes ``DEST/NAME/`` with ``config.json``, the weights as safetensors (bf16
by default: the dtype the GPU runs), the tokenizer files and
``goa-export.json``, which names the model and the SHA-256 of the GGUF file it
came from. The weights are the GGUF file's own values, dequantised; only the
rounding to bf16 is added.

With ``GOA_TRANSFORMERS_DIR`` set, the transformers backend loads an embedded
model from ``$GOA_TRANSFORMERS_DIR/NAME`` when :func:`find_export` accepts it
(its ``goa-export.json`` names that model and the registry's SHA-256), instead
of from the GGUF file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from goa.errors import GoaError, ModelFileError
from goa.inference import local_models

MANIFEST = "goa-export.json"


def export_model(name: str, dest: Path, *, dtype: str = "bfloat16", tokenizer: bool = True) -> Path:
    """Write the HF-layout export of embedded model ``name`` to ``dest/name``.

    ``tokenizer=False`` writes the weights, config and manifest only (for a
    machine that receives the tokenizer files of an export made elsewhere: the
    tokenizer is the slow part of reading a GGUF file)."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise GoaError("exporting needs goa's `gpu` extra (torch, transformers)") from None
    spec = local_models.get_spec(name)
    if dtype not in ("bfloat16", "float16", "float32"):
        raise GoaError(f"dtype must be bfloat16, float16 or float32, not {dtype!r}")
    source = local_models.ensure_model(name)
    started = time.perf_counter()
    target = dest / name
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=getattr(torch, dtype)
        )
        target.mkdir(parents=True, exist_ok=True)
        _save(model, target)
        if tokenizer:
            AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name).save_pretrained(
                target
            )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{source}: cannot export it to {target}: {exc}") from None
    manifest = {
        "model": name,
        "source_file": source.name,
        "source_sha256": spec.sha256,
        "dtype": dtype,
        "export_s": round(time.perf_counter() - started, 1),
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return target


def _save(model: Any, target: Path) -> None:
    """The config, generation config and weights of a dequantised model.

    transformers refuses ``save_pretrained`` for a model loaded from GGUF (it
    counts as quantized even when unpacked), so the pieces are written here: the
    config without its GGUF quantization entry (the weights are plain now), and
    the weights with safetensors, every name of a tied pair stored (the
    embedding and the head each hold a copy): transformers versions disagree
    about which name of a tied pair they read and whether they tie on loading
    (5.17 left the missing name randomly initialised, whichever it was), so an
    export names both.
    """
    from safetensors.torch import save_file

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(target)
    model.generation_config.save_pretrained(target)
    save_file(weights_to_save(model), str(target / "model.safetensors"), metadata={"format": "pt"})


def weights_to_save(model: Any) -> dict[str, Any]:
    """Every tensor of the state dict under its own name, as a contiguous tensor
    of its own (safetensors refuses tensors that share memory)."""
    return {
        name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()
    }


def read_manifest(directory: Path) -> dict[str, Any]:
    """The ``goa-export.json`` of an export directory."""
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a goa export ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: not a goa export (not a JSON object)")
    return data


def find_export(name: str) -> Path | None:
    """``$GOA_TRANSFORMERS_DIR/name`` when it holds an export of embedded model
    ``name`` made from the registry's file; None when the variable is unset or the
    folder is missing. A folder that is there but not such an export is an error."""
    root = os.environ.get("GOA_TRANSFORMERS_DIR", "").strip()
    if not root or name not in local_models.LOCAL_MODELS:
        return None
    directory = Path(root) / name
    if not directory.is_dir():
        return None
    manifest = read_manifest(directory)
    expected = local_models.get_spec(name).sha256
    if manifest.get("model") != name or manifest.get("source_sha256") != expected:
        raise ModelFileError(
            f"{directory}: an export of {manifest.get('model')!r} from a file with SHA-256 "
            f"{manifest.get('source_sha256')!r}, not of {name!r} ({expected})"
        )
    return directory


__all__ = ["MANIFEST", "export_model", "find_export", "read_manifest"]
