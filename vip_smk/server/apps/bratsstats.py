"""BraTSStats/1.0: the four acquisitions of one subject in one report (dependency-free)."""

import argparse
import csv
import sys

KINDS = ("t1", "t1ce", "t2", "flair")


def _columns(path):
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = [r for r in csv.reader(f) if r]
    if not rows:
        raise ValueError(f"{path}: empty file")
    header, data = rows[0], rows[1:]
    cols = {}
    for j, name in enumerate(header):
        vals = []
        for r in data:
            try:
                vals.append(float(r[j]))
            except (IndexError, ValueError):
                pass
        if vals:
            cols[name] = sum(vals) / len(vals)
    return len(data), cols


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    for kind in KINDS:
        p.add_argument(kind)
    p.add_argument("--precision", type=int, default=3)
    p.add_argument("--output", required=True)
    a = p.parse_args(argv)
    try:
        found = {kind: _columns(getattr(a, kind)) for kind in KINDS}
    except (OSError, ValueError) as e:
        print(f"BraTSStats: {e}", file=sys.stderr)
        return 2
    fmt = f"{{:.{a.precision}f}}"
    lines = [f"{kind}: {getattr(a, kind)} ({found[kind][0]} rows)" for kind in KINDS]
    shared = [c for c in found["t1"][1] if all(c in found[k][1] for k in KINDS)]
    for name in shared:
        lines.append(f"{name}: " + " ".join(f"{k}={fmt.format(found[k][1][name])}" for k in KINDS))
    with open(a.output, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"BraTSStats: {a.t1} ... -> {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
