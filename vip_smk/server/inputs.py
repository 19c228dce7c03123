"""Launch inputs of the local VIP server: VIP's checks of ``inputValues`` and the expansion of
list values into jobs, as VIP-portal does it.

Expansion (VIP-portal's iteration): the inputs listed under the descriptor's ``custom``
``"vip:dot"`` are paired element by element (a dot product: all their lists must have the same
length); every other input (``"vip:cross"`` or unlisted) is crossed with the result. So four
``vip:dot`` lists of N values give N jobs, not N^4. A Boutiques ``list`` input takes its whole
list in one job.
"""

from __future__ import annotations

import itertools
import json
import re

from vip_smk.server.pipelines import Pipeline
from vip_smk.server.store import ApiError, Store

# characters VIP accepts in input values (8009 otherwise) and in execution names (8019)
VALUE_RE = re.compile(r"^[0-9.,A-Za-z\-+@/_(): \[\]?&=]*$")
NAME_RE = re.compile(r"^[0-9A-Za-z\-_ ]+$")


def validate_inputs(store: Store, user: str, pipeline: Pipeline, values: dict) -> dict[str, list]:
    """Check the inputs as VIP does; return {param: [converted values]} (lists to expand)."""
    out: dict[str, list] = {}
    for key, value in values.items():
        inp = pipeline.input(key)
        if inp is None:
            raise ApiError(8009, f"Input field '{key}' is not valid: {pipeline.identifier} has "
                           f"no such parameter (parameters: {', '.join(i['id'] for i in pipeline.inputs)})")
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            raise ApiError(8009, f"Input field '{key}' is not valid: empty list")
        conv = []
        for v in items:
            if isinstance(v, (dict, list)) or v is None:
                raise ApiError(8009, f"Input field '{key}' is not valid: {v!r}")
            s = v if isinstance(v, str) else json.dumps(v)
            if not VALUE_RE.match(s):
                bad = sorted({c for c in s if not VALUE_RE.match(c)})
                raise ApiError(8009, f"Input field '{key}' is not valid: forbidden character(s) "
                               f"{''.join(bad)!r} in {s!r}")
            conv.append(convert(store, user, inp, key, v))
        if inp.get("list"):
            out[key] = [conv]  # a Boutiques list input takes the whole list in one job
        else:
            out[key] = conv
    for inp in pipeline.inputs:
        if inp["id"] in values or inp["id"] == "results-directory":
            continue
        if not inp.get("optional", False) and inp.get("type") != "Flag" \
                and inp.get("default-value") is None:
            raise ApiError(8018, f"Input field '{inp['id']}' is missing: it is required by "
                           f"{pipeline.identifier}")
    return out


def convert(store: Store, user: str, inp: dict, key: str, v):
    t = inp.get("type")
    if t == "Number":
        try:
            num = float(v)
            if inp.get("integer"):
                if num != int(num):
                    raise ValueError
                num = int(num)
        except (TypeError, ValueError):
            kind = "an integer" if inp.get("integer") else "a number"
            raise ApiError(8009, f"Input field '{key}' is not valid: {v!r} is not {kind}")
        for bound, cmp in (("minimum", lambda a, b: a < b), ("maximum", lambda a, b: a > b)):
            if bound in inp and cmp(num, inp[bound]):
                raise ApiError(8009, f"Input field '{key}' is not valid: {num} is out of range "
                               f"({bound} {inp[bound]})")
        return num
    if t == "Flag":
        s = str(v).lower()
        if s not in ("true", "false"):
            raise ApiError(8009, f"Input field '{key}' is not valid: {v!r} is not true/false")
        return s == "true"
    if t == "File":
        s = str(v)
        res = store.resolve(user, s)
        if res.local is None or not res.local.exists():
            raise ApiError(8009, f"Input field '{key}' is not valid: the file '{s}' does not "
                           "exist in your VIP space (upload it first)")
        return res.vip
    s = str(v)
    choices = inp.get("value-choices")
    if choices and s not in [str(c) for c in choices]:
        raise ApiError(8009, f"Input field '{key}' is not valid: {s!r} not in {choices}")
    return s


def expand_jobs(pipeline: Pipeline, lists: dict[str, list]) -> list[dict]:
    """One invocation per job: the ``vip:dot`` inputs paired element by element, crossed with
    the other inputs. Unequal ``vip:dot`` lists are refused (8009), naming each length."""
    dot = [k for k in pipeline.dot_inputs if k in lists]
    cross = [k for k in lists if k not in dot]
    if len({len(lists[k]) for k in dot}) > 1:
        sizes = ", ".join(f"'{k}' {len(lists[k])} value(s)" for k in dot)
        raise ApiError(8009, f"Input fields not valid: {pipeline.identifier} pairs "
                       f"{', '.join(repr(k) for k in pipeline.dot_inputs)} element by element "
                       f"(vip:dot), so their lists must have the same length; got {sizes}. "
                       "Dot iteration is impossible with inputs of different size")
    dot_combos = [dict(zip(dot, row)) for row in zip(*(lists[k] for k in dot))] if dot else [{}]
    cross_combos = [dict(zip(cross, row)) for row in itertools.product(*(lists[k] for k in cross))]
    return [{**d, **c} for d in dot_combos for c in cross_combos] or [{}]
