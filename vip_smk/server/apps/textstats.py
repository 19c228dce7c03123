"""TextStats/1.0: statistics of a delimited text file (dependency-free)."""

import argparse
import csv
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("input_file")
    p.add_argument("--delimiter", default=",")
    p.add_argument("--precision", type=int, default=3)
    p.add_argument("--output", required=True)
    a = p.parse_args(argv)
    delim = a.delimiter.encode().decode("unicode_escape") if a.delimiter else ","
    with open(a.input_file, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.reader(f, delimiter=delim))
    if not rows:
        print(f"{a.input_file}: empty file", file=sys.stderr)
        return 2
    header, data = rows[0], [r for r in rows[1:] if r]
    ncol = max(len(header), max((len(r) for r in data), default=0))
    lines = [f"file: {a.input_file}", f"rows: {len(data)}", f"columns: {ncol}"]
    for j in range(ncol):
        name = header[j] if j < len(header) else f"column{j + 1}"
        vals = []
        for r in data:
            try:
                vals.append(float(r[j]))
            except (IndexError, ValueError):
                pass
        if vals:
            fmt = f"{{:.{a.precision}f}}"
            mean = sum(vals) / len(vals)
            lines.append(
                f"{name}: mean={fmt.format(mean)} min={fmt.format(min(vals))} max={fmt.format(max(vals))}"
            )
        else:
            lines.append(f"{name}: non-numeric")
    with open(a.output, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"TextStats: {len(data)} rows, {ncol} columns -> {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
