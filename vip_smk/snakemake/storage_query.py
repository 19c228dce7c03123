"""`vip://` queries of the storage plugin: syntax and VIP's naming rules (no network).

A query is `vip://` followed by a VIP path without its leading `/`:
`vip://vip/Home/study/data/{subject}.csv` is the VIP path `/vip/Home/study/data/{subject}.csv`.
"""

from snakemake_interface_storage_plugins.io import WILDCARD_REGEX

from vip_smk.rules import clean_name, value_problem

SCHEME = "vip://"


def vip_path(query: str) -> str:
    """The VIP path of a `vip://` query."""
    return "/" + query[len(SCHEME):]


def _split(path: str) -> list[str]:
    """Split on `/` outside `{wildcard,constraints}`."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in path:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        if ch == "/" and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def name_problem(name: str) -> str | None:
    """Why VIP would not keep this file/folder name as it is (None if it would)."""
    clean = clean_name(name)
    if clean != name:
        return f"VIP would rename it to {clean!r} (spaces and non-ASCII characters are not kept)"
    problem = value_problem(name)
    if problem:
        return f"{problem}: VIP refuses it in pipeline inputs"
    return None


def query_problem(query) -> str | None:
    """None if `query` is a `vip://` query VIP can store, else the reason, naming the part.
    `{wildcards}` (with constraints) are accepted anywhere in a name."""
    if not isinstance(query, str) or not query.startswith(SCHEME):
        return "not a vip:// query (expected vip://vip/Home/...)"
    rest = query[len(SCHEME):]
    if rest.startswith("/"):
        return (f"write vip://{rest.lstrip('/')} (vip:// is followed by the VIP path without its "
                "leading '/')")
    parts = _split(rest)
    if parts[0] != "vip":
        return (f"VIP paths are under /vip (e.g. vip://vip/Home/study/data.csv): the query names "
                f"the path /{rest}")
    if rest.endswith("/"):
        return "remove the trailing '/' (folders are named like files, with directory(...))"
    if len(parts) < 3:
        return f"/{rest} is a VIP root folder: name a file or folder inside it (vip://vip/Home/...)"
    for i, part in enumerate(parts):
        if part == "":
            return "empty path part ('//')"
        if part in (".", ".."):
            return f"path part {part!r} is not allowed"
        if i == 1 and part.endswith(" (group)"):
            continue  # VIP's own group folders, e.g. '/vip/EGI tutorial (group)'
        masked = WILDCARD_REGEX.sub("w", part)
        if "{" in masked or "}" in masked:
            return f"{part!r}: unbalanced braces"
        problem = name_problem(masked)
        if problem:
            return f"{part!r}: {problem}"
    return None
