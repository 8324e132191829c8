#!/usr/bin/env python3
"""Opens a bnconv checkpoint with the Python `safetensors` package (numpy API) and checks it
against the seed network as docs/protocol.md defines it, independently of the Rust code: every
tensor name, shape and dtype, the metadata, the digests (format 2: `tensor_sha256` per tensor,
`metadata_sha256` over the other metadata entries), finite values, and (when present) the
training state.

    python3 tests/python/check_checkpoint.py FILE.safetensors [--variant bn] [--steps N]
        [--training-images 55000]

Exits non-zero, listing every problem, if anything differs. Needs `pip install safetensors numpy`.
"""
import argparse
import hashlib
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

CONV_LAYERS = 19
HIDDEN = 100
CLASSES = 10


def expected_params(variant):
    """name -> (shape, trainable) for the seed network of `variant`, in docs/protocol.md terms."""
    bn = variant != "plain"
    params = {}
    cin = 1
    for i in range(1, CONV_LAYERS + 1):
        cout = 4 * i
        params[f"conv{i:02}.weight"] = ((3, 3, cin, cout), True)  # HWIO
        if bn:
            params[f"bn{i:02}.gamma"] = ((cout,), True)
            params[f"bn{i:02}.beta"] = ((cout,), True)
            params[f"bn{i:02}.moving_mean"] = ((cout,), False)
            params[f"bn{i:02}.moving_var"] = ((cout,), False)
        else:
            params[f"conv{i:02}.bias"] = ((cout,), True)
        cin = cout
    params["fc1.weight"] = ((cin, HIDDEN), True)  # [in, out]
    if bn:
        for name, trainable in [("gamma", True), ("beta", True), ("moving_mean", False),
                                ("moving_var", False)]:
            params[f"bn_fc1.{name}"] = ((HIDDEN,), trainable)
    else:
        params["fc1.bias"] = ((HIDDEN,), True)
    params["fc2.weight"] = ((HIDDEN, CLASSES), True)
    params["fc2.bias"] = ((CLASSES,), True)
    return params


def check_digests(path, meta):
    """Recomputes both digests as documented: SHA-256 of each tensor's stored bytes, and SHA-256
    over the other metadata entries sorted by key, each as key, NUL, value, NUL."""
    problems = []
    h = hashlib.sha256()
    for key in sorted(k for k in meta if k != "metadata_sha256"):
        h.update(key.encode() + b"\0" + meta[key].encode() + b"\0")
    if meta.get("metadata_sha256") != h.hexdigest():
        problems.append("metadata_sha256 does not match the metadata")
    try:
        recorded = json.loads(meta.get("tensor_sha256", "{}"))
    except ValueError as e:
        return problems + [f"tensor_sha256 is not JSON: {e}"]
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    names = sorted(k for k in header if k != "__metadata__")
    if sorted(recorded) != names:
        problems.append("tensor_sha256 does not list exactly the file's tensors")
    for name in names:
        begin, end = header[name]["data_offsets"]
        if recorded.get(name) != hashlib.sha256(data[begin:end]).hexdigest():
            problems.append(f"{name}: SHA-256 differs from tensor_sha256")
    return problems


def check(path, variant=None, steps=None, training_images=55000):
    problems = []
    with safe_open(path, framework="np") as f:
        meta = f.metadata() or {}
    tensors = load_file(path)

    if meta.get("format") != "bnconv":
        problems.append(f"metadata format is {meta.get('format')!r}, expected 'bnconv'")
    if meta.get("format_version") != "2":
        problems.append(f"format_version is {meta.get('format_version')!r}, expected '2'")
    problems += check_digests(path, meta)
    file_variant = meta.get("variant")
    if file_variant not in ("plain", "bn", "bn-lowlevel"):
        problems.append(f"unknown variant {file_variant!r}")
        return problems, meta, tensors
    if variant is not None and file_variant != variant:
        problems.append(f"variant is {file_variant!r}, expected {variant!r}")
    if steps is not None and meta.get("steps") != str(steps):
        problems.append(f"steps is {meta.get('steps')!r}, expected {steps}")

    params = expected_params(file_variant)
    expected = {name: (shape, np.float32) for name, (shape, _) in params.items()}
    state = meta.get("training_state")
    if state is not None:
        try:
            state = json.loads(state)
        except ValueError as e:
            problems.append(f"training_state is not JSON: {e}")
            state = {}
        for name, (shape, trainable) in params.items():
            if trainable:
                expected[f"adam.m.{name}"] = (shape, np.float32)
                expected[f"adam.v.{name}"] = (shape, np.float32)
        expected["sampler.order"] = ((training_images,), np.uint64)

    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    problems += [f"missing tensor {n}" for n in missing]
    problems += [f"unexpected tensor {n}" for n in extra]
    for name, (shape, dtype) in expected.items():
        if name not in tensors:
            continue
        t = tensors[name]
        if t.dtype != dtype:
            problems.append(f"{name}: dtype {t.dtype}, expected {np.dtype(dtype)}")
        if t.shape != shape:
            problems.append(f"{name}: shape {t.shape}, expected {shape}")
        if t.dtype == np.float32 and not np.all(np.isfinite(t)):
            problems.append(f"{name}: non-finite values")
    for name in expected:
        if name.endswith("moving_var") and name in tensors and not np.all(tensors[name] > 0):
            problems.append(f"{name}: a variance that is not positive")
        if name.endswith(".weight") and name in tensors and not np.any(tensors[name] != 0):
            problems.append(f"{name}: all zeros")

    if state is not None:
        order = tensors.get("sampler.order")
        if order is not None and order.shape == (training_images,):
            if not np.array_equal(np.sort(order), np.arange(training_images, dtype=np.uint64)):
                problems.append("sampler.order is not a permutation of 0..n")
        for key in ["total_batches", "seed", "batch_size", "lr", "beta1", "beta2", "epsilon",
                    "adam_step", "sampler_position", "sampler_epochs", "sampler_rng_seed",
                    "sampler_rng_stream", "sampler_rng_word_pos"]:
            if key not in state:
                problems.append(f"training_state has no {key}")
        if "sampler_position" in state and not 0 <= state["sampler_position"] <= training_images:
            problems.append(f"sampler_position {state['sampler_position']} out of range")
        if "adam_step" in state and str(state["adam_step"]) != meta.get("steps"):
            problems.append(f"adam_step {state['adam_step']} != steps {meta.get('steps')}")
    return problems, meta, tensors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--variant")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--training-images", type=int, default=55000)
    args = ap.parse_args()
    problems, meta, tensors = check(args.checkpoint, args.variant, args.steps,
                                    args.training_images)
    if problems:
        print(f"{args.checkpoint}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        sys.exit(1)
    values = sum(t.size for n, t in tensors.items() if t.dtype == np.float32)
    print(f"{args.checkpoint}: ok: variant {meta['variant']}, {meta['steps']} steps, "
          f"{len(tensors)} tensors, {values} f32 values, training state "
          f"{'present' if 'training_state' in meta else 'absent'}")


if __name__ == "__main__":
    main()
