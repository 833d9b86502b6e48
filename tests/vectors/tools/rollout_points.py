#!/usr/bin/env python3
"""Re-derive the rollout expectations of the test vectors.

For each value, prints the hashed text "<salt>:<value>", h = murmur3_x86_32 of its
UTF-8 bytes (seed 0), the point (h * T) >> 32 for the total weight T, and the
variant: the first, in the order given, whose cumulative weight exceeds the point.

    pip install mmh3
    python3 tests/vectors/tools/rollout_points.py --salt half --weights a=1,b=1 user-1 user-2

The salt is the flag key unless the rollout sets `salt`. An integer `by` value is
hashed by its decimal digits, so pass 12345 for the JSON integer 12345. Weights are
given in the order they are written in the YAML (that order matters).
Only for authoring and reviewing vectors: the Rust tests never run this.
"""
import argparse
import sys

import mmh3


def murmur3_x86_32(text: str) -> int:
    """murmur3 x86_32 of the UTF-8 bytes of `text`, seed 0, as an unsigned 32-bit int."""
    return mmh3.hash(text.encode("utf-8"), 0, signed=False)


def parse_weights(spec: str):
    weights = []
    for part in spec.split(","):
        name, _, w = part.partition("=")
        weights.append((name, int(w)))
    return weights


def bucket(salt: str, value: str, weights):
    """-> (h, total, point, variant, cumulative weights)"""
    total = sum(w for _, w in weights)
    if not 1 <= total <= 2**32:
        raise ValueError(f"total weight {total} is outside 1..2^32")
    h = murmur3_x86_32(f"{salt}:{value}")
    point = (h * total) >> 32
    cumulative = 0
    for name, w in weights:
        cumulative += w
        if cumulative > point:
            return h, total, point, name
    raise AssertionError("unreachable: the last cumulative weight is the total")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--salt", required=True, help="the rollout salt (default in YAML: the flag key)")
    ap.add_argument("--weights", required=True, help="name=weight,... in the order written")
    ap.add_argument("values", nargs="+", help="the `by` values (strings, or an integer's decimal digits)")
    args = ap.parse_args(argv)
    weights = parse_weights(args.weights)
    cumulative, bounds = 0, []
    for name, w in weights:
        cumulative += w
        bounds.append(f"{name}<{cumulative}")
    print(f"salt={args.salt!r} T={cumulative} buckets: point {' / '.join(bounds)}")
    for value in args.values:
        h, total, point, name = bucket(args.salt, value, weights)
        print(f"{args.salt + ':' + value!r:40} h={h:<10} (0x{h:08x}) point={point:<10} -> {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
