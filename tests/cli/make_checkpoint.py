#!/usr/bin/env python3
"""Writes test checkpoints for spruce-prune with the standard library only (no numpy/torch).

  make_checkpoint.py transformer OUT.safetensors [--seed N] [--dtype F32|F16|BF16]
      a small transformer-like model: token/position embeddings, attention q/k/v/o and MLP
      weights, layer norms, biases, an I64 buffer, metadata
  make_checkpoint.py sharded DIR [--seed N]
      the same model split over two shards plus model.safetensors.index.json
  make_checkpoint.py activations WEIGHTS.safetensors OUT.safetensors
      per-input-channel norms for every rank-2 floating tensor of WEIGHTS
  make_checkpoint.py big OUT.safetensors BYTES DTYPE
      BYTES of F32 or BF16 weights in tensors of 64 MiB or less (the benchmark's input)
  make_checkpoint.py raw OUT HEADER_JSON DATA_BYTES [--len N]
      a file with the given header text and DATA_BYTES zero bytes (bad-input cases)
"""
import json, random, struct, sys, os


def f32_bits(x):
    return struct.pack("<f", x)


def bf16_bytes(x):
    b = struct.unpack("<I", struct.pack("<f", x))[0]
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16  # round to nearest even (finite inputs)
    return struct.pack("<H", b)


def f16_bytes(x):
    return struct.pack("<e", x)


def encode(values, dtype):
    if dtype == "F32":
        return struct.pack("<%df" % len(values), *values)
    if dtype == "F64":
        return struct.pack("<%dd" % len(values), *values)
    if dtype == "F16":
        return b"".join(f16_bytes(v) for v in values)
    if dtype == "BF16":
        return b"".join(bf16_bytes(v) for v in values)
    if dtype == "I64":
        return struct.pack("<%dq" % len(values), *values)
    raise ValueError(dtype)


SIZE = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I64": 8}


def write(path, tensors, metadata=None):
    """tensors: list of (name, dtype, shape, bytes)."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    off = 0
    for name, dt, shape, data in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, data in tensors:
            f.write(data)


def model(seed, dtype):
    rnd = random.Random(seed)
    d, ff, vocab, ctx = 16, 32, 40, 8

    def w(shape, dt=dtype, ties=False):
        n = 1
        for s in shape:
            n *= s
        if ties:  # many equal magnitudes: exercises the rules' tie handling
            vals = [rnd.choice([-1, 1]) * rnd.choice([0.5, 0.25, 1.0, 0.0, 2.0]) for _ in range(n)]
        else:
            vals = [rnd.gauss(0, 1) for _ in range(n)]
        return encode(vals, dt)

    t = [("model.embed_tokens.weight", dtype, [vocab, d], w([vocab, d])),
         ("model.embed_positions.weight", dtype, [ctx, d], w([ctx, d]))]
    for layer in range(2):
        p = "model.layers.%d." % layer
        for proj in "qkvo":
            t.append((p + "self_attn.%s_proj.weight" % proj, dtype, [d, d], w([d, d], ties=(proj == "k"))))
            t.append((p + "self_attn.%s_proj.bias" % proj, dtype, [d], w([d])))
        t.append((p + "mlp.up_proj.weight", dtype, [ff, d], w([ff, d])))
        t.append((p + "mlp.down_proj.weight", dtype, [d, ff], w([d, ff])))
        t.append((p + "input_layernorm.weight", dtype, [d], w([d])))
        t.append((p + "post_attention_layernorm.weight", dtype, [d], w([d])))
    t.append(("model.norm.weight", dtype, [d], w([d])))
    t.append(("model.position_ids", "I64", [1, ctx], encode(list(range(ctx)), "I64")))
    t.append(("lm_head.conv.weight", dtype, [8, 4, 3, 3], w([8, 4, 3, 3])))  # a rank-4 conv-like weight
    return t


def main(argv):
    args = list(argv)
    seed = 1
    dtype = "F32"
    if "--seed" in args:
        i = args.index("--seed"); seed = int(args[i + 1]); del args[i:i + 2]
    if "--dtype" in args:
        i = args.index("--dtype"); dtype = args[i + 1]; del args[i:i + 2]
    kind = args[0]
    meta = {"format": "pt", "source": "spruce tests/cli/make_checkpoint.py"}
    if kind == "transformer":
        write(args[1], model(seed, dtype), meta)
    elif kind == "sharded":
        os.makedirs(args[1], exist_ok=True)
        t = model(seed, dtype)
        half = len(t) // 2
        parts = {"model-00001-of-00002.safetensors": t[:half], "model-00002-of-00002.safetensors": t[half:]}
        wm = {}
        for fname, ts in parts.items():
            write(os.path.join(args[1], fname), ts, meta)
            for name, *_ in ts:
                wm[name] = fname
        total = sum(len(x[3]) for x in t)
        with open(os.path.join(args[1], "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
    elif kind == "activations":
        with open(args[1], "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            h = json.loads(f.read(n))
        rnd = random.Random(seed + 7)
        t = []
        for name, e in h.items():
            if name == "__metadata__" or e["dtype"] == "I64" or len(e["shape"]) < 2:
                continue
            t.append((name, "F32", [e["shape"][1]], encode([abs(rnd.gauss(1, 0.5)) for _ in range(e["shape"][1])], "F32")))
        write(args[2], t)
    elif kind == "big":
        total, dt = int(args[2]), args[3]
        esize = SIZE[dt]
        rows, cols = 4096, 4096 if dt == "F32" else 8192  # 64 MiB tensors
        per = rows * cols * esize
        count = max(1, total // per)
        rnd = random.Random(seed)
        # One random block repeated (fast to generate; values vary within each row).
        block_vals = [rnd.gauss(0, 1) for _ in range(cols)]
        row = encode(block_vals, dt)
        header = {"__metadata__": {"format": "pt"}}
        off = 0
        for i in range(count):
            header["layers.%d.weight" % i] = {"dtype": dt, "shape": [rows, cols], "data_offsets": [off, off + per]}
            off += per
        text = json.dumps(header).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        with open(args[1], "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            chunk = row * 256
            for i in range(count):
                for _ in range(rows // 256):
                    f.write(chunk)
    elif kind == "raw":
        header = args[2].encode()
        data = int(args[3])
        length = len(header)
        if "--len" in args:
            length = int(args[args.index("--len") + 1])
        with open(args[1], "wb") as f:
            f.write(struct.pack("<Q", length))
            f.write(header)
            f.write(b"\0" * data)
    else:
        sys.exit("unknown kind " + kind)


if __name__ == "__main__":
    main(sys.argv[1:])
