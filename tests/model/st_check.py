#!/usr/bin/env python3
"""The torch side of test_safetensors: reads files twinfuse wrote.
  st_check.py export TORCH_WEIGHTS TWINFUSE_FILE  torchvision resnet18 (conv1 for the file's channel
      count) takes TWINFUSE_FILE with load_state_dict(strict=False), only fc.weight and fc.bias
      missing, no unexpected key, every tensor bit-equal to TORCH_WEIGHTS (dtype included)
  st_check.py pattern FILE  the tensors test_safetensors wrote: values, dtypes, shapes, metadata
exit 0 when all holds, 1 with the reason otherwise."""
import sys

import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check_export(ref_path, path):
    sd, ref = load_file(path), load_file(ref_path)
    m = torchvision.models.resnet18()
    c_in = sd["conv1.weight"].shape[1]
    m.conv1 = torch.nn.Conv2d(c_in, 64, kernel_size=7, stride=2, padding=3, bias=False)
    res = m.load_state_dict(sd, strict=False)
    if sorted(res.missing_keys) != ["fc.bias", "fc.weight"] or res.unexpected_keys:
        fail(f"load_state_dict: missing {res.missing_keys}, unexpected {res.unexpected_keys}")
    for k, v in sd.items():
        if v.dtype != ref[k].dtype or v.shape != ref[k].shape or not torch.equal(v, ref[k]):
            fail(f"{k}: {v.dtype} {tuple(v.shape)} differs from the torch file's {ref[k].dtype} "
                 f"{tuple(ref[k].shape)}")
    print(f"ok: torchvision resnet18 (C={c_in}) loads {len(sd)} tensors, only fc.* missing, bit-equal")


def check_pattern(path):
    sd = load_file(path)
    want = {
        "f32": (torch.arange(24, dtype=torch.float32) * 0.5 - 3).reshape(2, 3, 4),
        "bf16": (torch.arange(6, dtype=torch.float32) - 2.5).to(torch.bfloat16).reshape(6),
        "i64": torch.tensor(1 << 40, dtype=torch.int64),
        "u8": torch.arange(5, dtype=torch.uint8).reshape(5, 1),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
    }
    if sorted(sd) != sorted(want):
        fail(f"tensors {sorted(sd)}, want {sorted(want)}")
    for k, v in want.items():
        if sd[k].dtype != v.dtype or sd[k].shape != v.shape or not torch.equal(sd[k], v):
            fail(f"{k}: got {sd[k]} want {v}")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    if meta != {"step": "42", "config": "{\"a\": [1, 2]}\n\"quoted\""}:
        fail(f"metadata {meta}")
    print("ok: torch reads every dtype, shape and the metadata twinfuse wrote")


if __name__ == "__main__":
    if sys.argv[1] == "export":
        check_export(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "pattern":
        check_pattern(sys.argv[2])
    else:
        fail("unknown mode " + sys.argv[1])
