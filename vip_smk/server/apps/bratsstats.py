"""BraTSStats/1.0: the four acquisitions of one subject in one report (dependency-free; reads
each file as PairStats does)."""

import argparse
import sys

from pairstats import _columns  # the app directory is on sys.path (the script's own folder)

KINDS = ("t1", "t1ce", "t2", "flair")


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
    report = [f"{kind}: {getattr(a, kind)} ({found[kind][0]} rows)" for kind in KINDS]
    for name in [c for c in found["t1"][1] if all(c in found[k][1] for k in KINDS)]:
        report.append(f"{name}: " + " ".join(f"{k}={fmt.format(found[k][1][name])}" for k in KINDS))
    with open(a.output, "w", encoding="utf-8") as out:
        out.write("\n".join(report) + "\n")
    print(f"BraTSStats: {a.t1} and its t1ce, t2, flair -> {a.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
