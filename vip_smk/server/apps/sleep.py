"""Sleep/1.0: sleep for a duration, then write a message (dependency-free)."""

import argparse
import sys
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("duration", type=float)
    p.add_argument("--message", default="done")
    p.add_argument("--output", default="sleep.txt")
    a = p.parse_args(argv)
    print(f"Sleep: sleeping {a.duration:g} s", flush=True)
    end = time.monotonic() + max(0.0, a.duration)
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(left, 0.5))
    with open(a.output, "w", encoding="utf-8") as f:
        f.write(f"{a.message}\nslept {a.duration:g} s\n")
    print(f"Sleep: {a.message}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
