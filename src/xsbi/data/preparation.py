"""How a spectrum is prepared for inference: regrouping and energy band, as a plain record.

``xsbi run`` prepares its observation from the configuration (``data.group``, ``data.energy``);
the trained network stores the same record (``meta["preparation"]`` in ``network.pt``), so that
``xsbi batch`` prepares new PHA files exactly as the training spectrum was.  The record is JSON:

``{"group": {"method": "file"}, "notice_ranges": [[0.3, 10.0]]}``

``group.method`` is ``"file"`` (the file's own GROUPING), ``"constant"`` (``n`` channels per bin),
``"min_counts"`` (at least ``n`` counts per bin, within the band) or ``"none"`` (every channel its
own bin).
"""

from __future__ import annotations

from xsbi.errors import DataError

GROUP_METHODS = ("file", "constant", "min_counts", "none")


def group_record(group) -> dict:
    """``{"method": ..., "n": ...}`` from a ``GroupConfig``, a record, or None (the file's grouping)."""
    if group is None:
        return {"method": "file"}
    if isinstance(group, dict):
        method, n = group.get("method", "file"), group.get("n")
    else:  # xsbi.config.GroupConfig
        method, n = group.method, group.n
    if method not in GROUP_METHODS:
        raise DataError(f"unknown grouping method '{method}'; expected one of {', '.join(GROUP_METHODS)}")
    if method in ("constant", "min_counts"):
        return {"method": method, "n": int(n)}
    return {"method": method}


def preparation_record(group, energy) -> dict:
    """The record of a preparation: grouping (see :func:`group_record`) and noticed band(s).

    ``energy`` is one ``(emin, emax)`` pair or a sequence of pairs, in keV.
    """
    pairs = list(energy)
    if len(pairs) == 2 and all(isinstance(v, (int, float)) for v in pairs):
        pairs = [pairs]
    return {"group": group_record(group), "notice_ranges": [[float(lo), float(hi)] for lo, hi in pairs]}


def prepare_spectrum(spectrum, preparation: dict):
    """Regroup and notice a loaded spectrum as ``preparation`` says (as ``xsbi run`` does)."""
    group = group_record(preparation.get("group"))
    ranges = [tuple(r) for r in preparation["notice_ranges"]]
    method = group["method"]
    if method == "constant":
        spectrum = spectrum.group_constant(group["n"])
    elif method == "min_counts":
        spectrum = spectrum.notice(ranges).group_min_counts(group["n"])
    elif method == "none":
        spectrum = spectrum.ungroup()
    return spectrum.notice(ranges)


def describe(preparation: dict) -> str:
    """One line in words, e.g. 'file grouping, 0.3-10 keV'."""
    g = group_record(preparation.get("group"))
    grouping = {"file": "the file's grouping", "none": "no grouping",
                "constant": f"grouped by {g.get('n')} channels",
                "min_counts": f"grouped to at least {g.get('n')} counts"}[g["method"]]
    band = ", ".join(f"{lo:g}-{hi:g}" for lo, hi in preparation["notice_ranges"])
    return f"{grouping}, {band} keV"
