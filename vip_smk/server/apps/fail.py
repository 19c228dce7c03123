"""Fail/1.0: write a message on stderr and exit 1 (dependency-free)."""

import argparse
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--input", default=None)
    p.add_argument("--message", default="deliberate failure")
    a = p.parse_args(argv)
    print("Fail: about to fail", flush=True)
    print(a.message, file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
