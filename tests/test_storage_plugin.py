"""The `vip://` Snakemake storage plugin, against real local VIP servers over HTTP.

- Snakemake's own suite (`TestStorageBase`, unmodified) for a file and for a directory, on a
  plain server and on one answering 20% of requests with faults;
- query validation, inventory batching, dates (whole seconds, null dates, clock skew);
- a real Snakefile with `--cores 4`: second run "Nothing to be done", a changed remote input
  reruns exactly its downstream jobs, the key appears nowhere in Snakemake's output or files.
"""

import asyncio
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from snakemake.io import IOCache
from snakemake_interface_storage_plugins.tests import TestStorageBase

from vip_smk.client import VipClient
from vip_smk.server import LocalServer
from vip_smk.snakemake.storage import StorageProvider, StorageProviderSettings
from vip_smk.snakemake.storage_dates import DateBook, vip_seconds

KEY_ENV = "VIP_SMK_TEST_STORAGE_KEY"  # a variable name of our own: the key travels only there
ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture(scope="module")
def faulty_server(tmp_path_factory):
    """A server answering 20% of /rest requests with a 503 or a reset connection."""
    srv = LocalServer(tmp_path_factory.mktemp("vip-faulty"), port=0,
                      users=[f"alice:{secrets.token_urlsafe(18)}"], fault_rate=0.2, seed=7)
    srv.start(timeout=60)
    yield srv
    srv.stop()


def _settings(srv) -> StorageProviderSettings:
    return StorageProviderSettings(url=srv.url, api_key_env=KEY_ENV)


def _provider(srv, tmp_path) -> StorageProvider:
    import logging

    return StorageProvider(local_prefix=tmp_path / "local_prefix", logger=logging.getLogger("t"),
                           settings=_settings(srv))


# --------------------------------------------------------------------------------------------
# Snakemake's own suite, unmodified
# --------------------------------------------------------------------------------------------


class _Base(TestStorageBase):
    __test__ = False
    server_fixture = "vip_server"

    @pytest.fixture(autouse=True)
    def _server(self, request, monkeypatch):
        self.srv = request.getfixturevalue(self.server_fixture)
        monkeypatch.setenv(KEY_ENV, self.srv.api_key)

    def get_storage_provider_cls(self):
        return StorageProvider

    def get_storage_provider_settings(self):
        return _settings(self.srv)

    def get_query(self, tmp_path) -> str:
        return f"vip://vip/Home/suite/{type(self).__name__}/{tmp_path.name}/test.txt"

    def get_query_not_existing(self, tmp_path) -> str:
        return f"vip://vip/Home/suite/{type(self).__name__}/{tmp_path.name}/missing.txt"


class TestFiles(_Base):
    __test__ = True
    files_only = True


class TestDirectories(_Base):
    __test__ = True
    files_only = False  # runs the file case, then the directory case on the same query


class TestFilesUnderFaults(_Base):
    __test__ = True
    files_only = True
    server_fixture = "faulty_server"


class TestDirectoriesUnderFaults(_Base):
    __test__ = True
    files_only = False
    server_fixture = "faulty_server"
