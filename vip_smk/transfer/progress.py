"""Progress of transfers: tqdm bars (bytes and files) when attached to a terminal or a
notebook (text bars without ipywidgets), silent otherwise."""

from __future__ import annotations

import sys
import threading


def _in_notebook() -> bool:
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython  # type: ignore

        shell = get_ipython()
        return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"
    except Exception:  # noqa: BLE001
        return False


def want_progress(progress: bool | None) -> bool:
    """None = auto: on when stderr is a terminal or we run in a notebook."""
    if progress is not None:
        return bool(progress)
    if _in_notebook():
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Two tqdm bars (bytes, files) and the byte counter of the report (thread-safe)."""

    def __init__(self, enabled: bool, desc: str, total_bytes: int, total_files: int):
        self._lock = threading.Lock()
        self.bytes = 0
        self.bars = None
        if enabled:
            from tqdm import tqdm

            make = tqdm
            if _in_notebook():
                try:  # widgets need ipywidgets; without it, text bars
                    from tqdm.notebook import tqdm as notebook_tqdm
                    make = notebook_tqdm
                    make(total=0, leave=False).close()
                except Exception:  # noqa: BLE001
                    make = tqdm
            self.bars = (
                make(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                     position=0, leave=True, dynamic_ncols=True),
                make(total=total_files, unit="file", desc="files", position=1, leave=True,
                     dynamic_ncols=True),
            )

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes += n
        if self.bars:
            self.bars[0].update(n)

    def file_done(self) -> None:
        if self.bars:
            self.bars[1].update(1)

    def close(self) -> None:
        if self.bars:
            for bar in self.bars:
                bar.close()


__all__ = ["Progress", "want_progress"]
