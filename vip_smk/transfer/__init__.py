"""The transfer layer: trees up and down (`trees`: streaming, parallel, incremental), a tree's
local side (`local_tree`), size-aware scheduling (`scheduling`), tarball extraction (`archives`)
and progress bars (`progress`). One file's stream is the API layer's (`vip_smk.api.streams`).

May import: `vip_smk.api` (the resource client, for annotations), `vip_smk.rules`, `vip_smk.util`.
``from vip_smk.transfer import upload_tree`` keeps working: the tree functions are re-exported.
"""

from vip_smk.transfer.trees import (  # noqa: F401  (re-exported)
    PreflightError,
    TransferError,
    TransferReport,
    check_local_tree,
    download_files,
    download_tree,
    list_tree,
    upload_tree,
)
