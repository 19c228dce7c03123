"""Smooth/1.0: moving average of the numeric columns of a CSV file (dependency-free)."""

import argparse
import csv
import io
import sys
import tarfile
import time


def _add(tar, name, text):
    data = text.encode("utf-8")
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("input_file")
    p.add_argument("--window", type=int, default=3)
    p.add_argument("--normalize", action="store_true")
    p.add_argument("--output", required=True)
    a = p.parse_args(argv)
    if a.window < 1:
        print("window must be >= 1", file=sys.stderr)
        return 2
    with open(a.input_file, newline="", encoding="utf-8", errors="replace") as f:
        rows = [r for r in csv.reader(f) if r]
    if not rows:
        print(f"{a.input_file}: empty file", file=sys.stderr)
        return 2
    header, data = rows[0], rows[1:]
    cols = []
    for j, name in enumerate(header):
        try:
            cols.append((name, [float(r[j]) for r in data]))
        except (IndexError, ValueError):
            continue
    if not cols:
        print(f"{a.input_file}: no numeric column", file=sys.stderr)
        return 3
    smoothed = []
    for name, vals in cols:
        out = []
        for i in range(len(vals)):
            win = vals[max(0, i - a.window + 1): i + 1]
            out.append(sum(win) / len(win))
        if a.normalize and out:
            lo, hi = min(out), max(out)
            out = [(v - lo) / (hi - lo) if hi > lo else 0.0 for v in out]
        smoothed.append((name, out))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([n for n, _ in smoothed])
    for i in range(len(data)):
        w.writerow([f"{vals[i]:.6g}" for _, vals in smoothed])
    summary = [f"input: {a.input_file}", f"rows: {len(data)}", f"window: {a.window}",
               f"normalize: {a.normalize}"]
    for name, vals in smoothed:
        if vals:
            summary.append(f"{name}: mean={sum(vals) / len(vals):.6g} min={min(vals):.6g} max={max(vals):.6g}")
    with tarfile.open(a.output, "w:gz") as tar:
        _add(tar, "smoothed.csv", buf.getvalue())
        _add(tar, "summary.txt", "\n".join(summary) + "\n")
    print(f"Smooth: {len(data)} rows, {len(smoothed)} columns, window {a.window} -> {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
