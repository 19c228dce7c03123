"""Tarballs among downloaded results: extracted into a directory named like the archive
(vip-client's layout), with `tarfile`'s "data" filter, crash-safe (a temporary directory
renamed at the end; the archive removed only after a successful extraction)."""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
from pathlib import Path

log = logging.getLogger(__name__)




def _extract_tmp(archive: Path) -> Path:
    return archive.with_name("." + archive.name + ".extract.part")


def recover_extraction(local: Path) -> bool:
    """A crash between removing the archive and renaming its extracted directory leaves the
    complete directory under its temporary name: finish the rename."""
    tmp = _extract_tmp(local)
    if tmp.is_dir() and not local.exists():
        os.replace(tmp, local)
        return True
    return False


def extract_archive(archive: str | os.PathLike) -> list[str]:
    """Extract a tarball into a directory named like the archive (VIP client layout: `x.tgz`
    becomes the directory `x.tgz/`). Members that would escape it (`..`, absolute links,
    devices...) are refused by `tarfile`'s "data" filter and reported (returned). The archive
    is removed only after a successful extraction."""
    archive = Path(archive)
    tmp = _extract_tmp(archive)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    refused: list[str] = []

    def data_only(member: tarfile.TarInfo, dest: str):
        try:
            return tarfile.data_filter(member, dest)
        except tarfile.FilterError as exc:
            refused.append(f"{archive.name}: refused member {member.name!r} ({exc})")
            return None

    try:
        with tarfile.open(archive) as tf:
            tf.extractall(tmp, filter=data_only)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for line in refused:
        log.warning("%s", line)
    archive.unlink()
    os.replace(tmp, archive)
    return refused


__all__ = ["extract_archive", "recover_extraction"]
