"""PairStats/1.0: compares two CSV files of one subject (dependency-free)."""

import argparse
import csv
import sys


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
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument("--precision", type=int, default=3)
    p.add_argument("--output", required=True)
    a = p.parse_args(argv)
    try:
        rows_a, cols_a = _columns(a.image_a)
        rows_b, cols_b = _columns(a.image_b)
    except (OSError, ValueError) as e:
        print(f"PairStats: {e}", file=sys.stderr)
        return 2
    fmt = f"{{:.{a.precision}f}}"
    lines = [f"file_a: {a.image_a}", f"file_b: {a.image_b}", f"rows: {rows_a} {rows_b}"]
    for name in [c for c in cols_a if c in cols_b]:
        ma, mb = cols_a[name], cols_b[name]
        lines.append(f"{name}: mean_a={fmt.format(ma)} mean_b={fmt.format(mb)} diff={fmt.format(mb - ma)}")
    with open(a.output, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"PairStats: {a.image_a} vs {a.image_b} -> {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
