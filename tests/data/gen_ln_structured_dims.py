#!/usr/bin/env python3
"""Generates tests/data/ln_structured_dims.json: torch.nn.utils.prune.ln_structured along
axes other than 0 and 1 (dims 2, 3 and negative dims, plus 0 and 1 for comparison) on
seeded 4-D weights, for tests/structural/test_slice.cpp. The test needs no torch; only
regenerating the data does.

Run it from the repository root with a throw-away virtual environment outside the repo:

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch   # or --index-url .../whl/cpu
    /tmp/torchenv/bin/python tests/data/gen_ln_structured_dims.py

Semantics recorded: torch keeps the `size(dim) - k` slices of largest Ln norm (topk), with
k = amount for an integer amount and round(amount * size(dim)) (half to even) for a float.
torch leaves the order of equal norms unspecified, spruce's selection::exact prunes the
lower index first; a case whose equal norms straddle the cut is written only when torch's
mask happens to agree with that rule (`ties_straddle` marks them), so every mask in the
file is one both rules produce. Tie cases use small integer weights, so every sum is
exact and slices built equal have equal norms in any summation order.
"""
import json
import math
import os

import torch
import torch.nn.utils.prune as prune

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ln_structured_dims.json")


class Holder(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.weight = torch.nn.Parameter(w.clone())


def norms(w, n, dim):
    d = dim % w.dim()
    dims = [a for a in range(w.dim()) if a != d]
    return torch.linalg.vector_norm(w, ord=n, dim=dims)


def lower_index_rule(score, k):
    """spruce's selection::exact on the torch norms: the k lowest, lower index first."""
    order = sorted(range(len(score)), key=lambda i: (score[i], i))
    keep = [1] * len(score)
    for i in order[:k]:
        keep[i] = 0
    return keep


def count_of(amount, size):
    return amount if isinstance(amount, int) else round(amount * size)


def weights(shape, seed, ties):
    g = torch.Generator().manual_seed(seed)
    if not ties:
        return torch.randn(shape, generator=g, dtype=torch.float32)
    # Small integers: exact norms; then copy slices so that whole slices tie.
    w = torch.randint(-3, 4, shape, generator=g).to(torch.float32)
    return w


def make_ties(w, dim):
    """Copies slice 0 into slice 1 and slice 2 into the last one (same values, same order)."""
    w = w.clone()
    s = w.shape[dim]
    if s >= 2:
        w.select(dim, 1).copy_(w.select(dim, 0))
    if s >= 4:
        w.select(dim, s - 1).copy_(w.select(dim, 2))
    return w


def main():
    torch.use_deterministic_algorithms(True)
    shapes = [[4, 3, 5, 6], [3, 2, 4, 7], [2, 3, 6, 1], [5, 4, 3, 3]]
    dims = [0, 1, 2, 3, -1, -2, -3]
    amounts = [0.25, 0.5, 0.6, 0.0, 1.0, 1, 2]
    ns = [1, 2, "inf"]
    cases = []
    skipped = 0
    seed = 0
    for shape in shapes:
        for ties in (False, True):
            for dim in dims:
                seed += 1
                base = weights(shape, seed, ties)
                if ties:
                    base = make_ties(base, dim % 4)
                size = shape[dim]
                runs = []
                for amount in amounts:
                    if isinstance(amount, int) and amount > size:
                        continue
                    for n in ns:
                        p = math.inf if n == "inf" else n
                        m = Holder(base)
                        prune.ln_structured(m, "weight", amount=amount, n=p, dim=dim)
                        mask = m.weight_mask.detach().to(torch.int64).flatten().tolist()
                        k = count_of(amount, size)
                        score = norms(base, p, dim).tolist()
                        ref = lower_index_rule(score, k)
                        # The slices torch kept, read back from its mask.
                        kept = (m.weight_mask.sum(dim=[a for a in range(4) if a != dim % 4]) > 0)
                        kept = kept.to(torch.int64).tolist()
                        straddle = 0 < k < size and sorted(score)[k - 1] == sorted(score)[k]
                        if kept != ref:
                            assert straddle, (shape, dim, amount, n)  # only ties may differ
                            skipped += 1
                            continue
                        runs.append({
                            "n": n,
                            "amount": amount,
                            "amount_is_count": isinstance(amount, int),
                            "ties_straddle": straddle,
                            "mask": mask,
                        })
                cases.append({
                    "shape": shape,
                    "dim": dim,
                    "ties": ties,
                    "values": [float(x) for x in base.flatten().tolist()],
                    "runs": runs,
                })
    doc = {
        "source": "torch.nn.utils.prune.ln_structured (torch " + torch.__version__.split("+")[0] +
                  ") along dims 0..3 and negative dims, generated by tests/data/gen_ln_structured_dims.py",
        "semantics": "exact-k over slices along `dim` (negative counts from the end): slice score = Ln norm "
                     "of the slice (n = 1, 2 or 'inf'); k = amount if amount_is_count else "
                     "round_half_even(amount * size(dim)); the k lowest-norm slices are pruned. Cases where "
                     "torch's tie order disagrees with 'lower index pruned first' are left out.",
        "left_out_tie_cases": skipped,
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} weights, {sum(len(c['runs']) for c in cases)} runs to {OUT} ({skipped} tie-order disagreements left out)")


if __name__ == "__main__":
    main()
