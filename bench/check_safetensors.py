#!/usr/bin/env python3
"""An independent reader of the safetensors format (https://github.com/huggingface/safetensors, the
published layout: an 8-byte little-endian header length, a JSON header of name -> dtype, shape,
data_offsets, an optional "__metadata__", then the raw little-endian data), using numpy only, for a
model.safetensors written by `forgetting train`. Outside the test suite (the `safetensors` package is
not served here). It checks, against the folder's recipe.json and units.csv (written as text by another
path of the library):

  * the names: fc1 ... fc{K+1} weight and bias, forget1 ... forget{K} wf (when the net has the layer);
  * the shapes: fc{k}/weight [inputs, outputs], fc{k}/bias [outputs], forget{k}/wf [units];
  * the dtypes: F32 (the library trains in float32);
  * the header: offsets contiguous from 0, in order, covering the data exactly, sizes = prod(shape) * 4;
  * the values: every forget{k}/wf equals units.csv's wf column (float32 printed round-trip), and every
    tensor is finite.

Usage: python3 bench/check_safetensors.py <train results folder>
Exit 0 and one line per tensor when the file checks; exit 1 with the reason otherwise.
"""
import csv
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def fail(message):
    print(f"check_safetensors: {message}")
    sys.exit(1)


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        fail(f"{path}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        fail(f"{path}: header of {n} bytes goes beyond the file")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    data = raw[8 + n :]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    spans = []
    for name, entry in header.items():
        dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            fail(f"{name}: unknown dtype {dtype}")
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(DTYPES[dtype]).itemsize
        if end - begin != size:
            fail(f"{name}: data_offsets {begin}..{end} hold {end - begin} bytes, shape {shape} of {dtype} needs {size}")
        if not 0 <= begin <= end <= len(data):
            fail(f"{name}: data_offsets {begin}..{end} beyond the {len(data)} bytes of data (truncated?)")
        spans.append((begin, end, name))
        tensors[name] = (dtype, shape, np.frombuffer(data[begin:end], dtype=np.dtype(DTYPES[dtype]).newbyteorder("<")).reshape(shape))
    spans.sort()
    at = 0
    for begin, end, name in spans:
        if begin != at:
            fail(f"{name}: starts at {begin}, the data before ends at {at} (a gap or an overlap)")
        at = end
    if at != len(data):
        fail(f"the tensors cover {at} bytes of {len(data)} bytes of data")
    return tensors, metadata


def main():
    if len(sys.argv) != 2:
        fail("usage: check_safetensors.py <train results folder>")
    folder = sys.argv[1]
    tensors, metadata = read(os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "recipe.json"), encoding="utf-8") as f:
        recipe = json.load(f)
    if "recipe" in metadata and json.loads(metadata["recipe"]) != recipe:
        fail("the recipe in the file's metadata differs from recipe.json")

    hidden = recipe["model"]["hidden"]
    sizes = [784] + hidden + [10]
    layer = recipe["model"]["forgetting_layer"]
    expected = {}
    for k in range(1, len(sizes)):
        expected[f"fc{k}/weight"] = [sizes[k - 1], sizes[k]]
        expected[f"fc{k}/bias"] = [sizes[k]]
    if layer is not None:
        for k in range(1, len(hidden) + 1):
            expected[f"forget{k}/wf"] = [hidden[k - 1]]

    if set(tensors) != set(expected):
        fail(f"names differ: missing {sorted(set(expected) - set(tensors))}, unexpected {sorted(set(tensors) - set(expected))}")
    for name, shape in sorted(expected.items()):
        dtype, stored, values = tensors[name]
        if dtype != "F32":
            fail(f"{name}: dtype {dtype}, expected F32")
        if list(stored) != shape:
            fail(f"{name}: shape {stored}, expected {shape}")
        if not np.all(np.isfinite(values)):
            fail(f"{name}: holds non-finite values")

    checked = 0
    if layer is not None:
        with open(os.path.join(folder, "units.csv"), encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for k in range(1, len(hidden) + 1):
            wf = tensors[f"forget{k}/wf"][2]
            column = np.array([float(r["wf"]) for r in rows if int(r["layer"]) == k], dtype=np.float64)
            if column.shape != wf.shape or not np.array_equal(column.astype(np.float32), wf):
                worst = np.max(np.abs(column - wf.astype(np.float64))) if column.shape == wf.shape else "shape"
                fail(f"forget{k}/wf differs from units.csv's wf column (largest difference {worst})")
            checked += wf.size

    for name in sorted(tensors):
        dtype, shape, values = tensors[name]
        print(f"{name:16s} {dtype} {shape!s:12s} mean {float(values.astype(np.float64).mean()):+.6f}")
    print(f"ok: {len(tensors)} tensors, names, shapes and dtypes as recipe.json describes; {checked} W_f values equal units.csv")


if __name__ == "__main__":
    main()
