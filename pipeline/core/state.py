"""Compact binary encoding of a join state (the value of the `join-state` table).

Runs for every table write and read of the join runtime (`pipeline.stream.runtime`).
`pipeline.core.join` keeps working on plain dicts; only the bytes in the table change.

A state used to be the orjson of its dict (~110 B for a waiting message). Now it
is version byte 0x01, a 16-bit field mask, then the present fields
struct-packed: timestamps as int64 (queue-ready and first-seen watermark as
32-bit differences from the accepted time when they fit), enums (class, priority, source, status) as
one byte with an escape for any other string, short strings length-prefixed;
the accepted event's descriptors (class, priority, source, account, MTA, client
error) come last, and are cached both ways as a whole (few distinct values).
A waiting message takes ~37 B. The message id is not stored: it is the table
key, and `decode` puts it back.

States written before (JSON, first byte '{') are still read, so an existing
changelog restores as it is; they are re-encoded the next time they change. A
state this format cannot hold (an unknown field, a string over 255 bytes) is
written as JSON, which every reader understands: nothing is ever lost to the
format. A value that is neither is a corrupt table record: `decode` raises.
"""
from __future__ import annotations

import struct
from typing import Any

import orjson

VERSION = 1
_V = bytes([VERSION])
_I64, _I32, _U32, _U16 = struct.Struct("<q"), struct.Struct("<i"), struct.Struct("<I"), struct.Struct("<H")
_HEAD = struct.Struct("<BH")
# field mask bits
_A, _R, _SW, _CS, _FS, _OS, _SIG, _REV, _P, _R32, _SW32 = (1 << i for i in range(11))
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
_KNOWN = {"id", "a", "r", "sw", "cs", "fs", "os", "orev", "sig", "rev", "p"}
_CLASSES = ("transactional", "campaign")
_PRIORITIES = ("normal", "low")
_SOURCES = ("", "smtp", "api")
_STATUSES = ("on_time", "late", "overdue", "never_ready")
_ORPHAN = ("open", "resolved")
_SUSPECT = ("", "ahead", "behind")
_ESC = 255  # enum escape: a length-prefixed string follows


class _Unfit(Exception):
    """The state does not fit the compact format: write JSON instead."""


def _str(out: bytearray, s: Any) -> None:
    if not isinstance(s, str):
        raise _Unfit
    b = s.encode("utf-8")
    if len(b) > 255:
        raise _Unfit
    out.append(len(b))
    out += b


def _enum(out: bytearray, s: Any, values: tuple[str, ...]) -> None:
    try:
        out.append(values.index(s))
    except ValueError:
        out.append(_ESC)
        _str(out, s)


def _int(out: bytearray, v: Any, st: struct.Struct = _I64) -> None:
    if type(v) is not int:
        raise _Unfit
    try:
        out += st.pack(v)
    except struct.error:
        raise _Unfit from None


_SEGMENTS: dict[tuple[Any, ...], bytes] = {}  # accepted descriptors -> encoded (few distinct: cached)
_FIELDS: dict[bytes, tuple[str, ...]] = {}  # and back
_CACHE_MAX = 8192


def _segment(a: list[Any]) -> bytes:
    """Class, priority, source, account, MTA, client error of an accepted event, encoded."""
    k = (a[1], a[2], a[3], a[4], a[5], a[6] if len(a) > 6 else "")  # 0.1 states have 6: "" is meant
    seg = _SEGMENTS.get(k)
    if seg is None:
        out = bytearray()
        _enum(out, k[1], _CLASSES)
        _enum(out, k[2], _PRIORITIES)
        _enum(out, k[3], _SOURCES)
        _str(out, k[0])
        _str(out, k[4])
        _str(out, k[5])
        seg = bytes(out)
        if len(_SEGMENTS) >= _CACHE_MAX:
            _SEGMENTS.clear()
        _SEGMENTS[k] = seg
    return seg


def _compact(state: dict[str, Any]) -> bytes:
    if not _KNOWN.issuperset(state):
        raise _Unfit
    mask = 0
    out = bytearray(b"\x00\x00\x00")
    p = state.get("p")
    if p is not None:
        mask |= _P
        _int(out, p, _U16)
    a = state.get("a")
    base = None
    if a is not None:
        if not isinstance(a, list) or len(a) not in (6, 7):
            raise _Unfit
        mask |= _A
        base = a[0]
        _int(out, base)
    # r and sw as 32-bit differences from the accepted time (sw: from r without one) when they fit
    r = state.get("r")
    if r is not None:
        mask |= _R
        if base is not None and type(r) is int and _I32_MIN <= r - base <= _I32_MAX:
            mask |= _R32
            out += _I32.pack(r - base)
        else:
            _int(out, r)
    sw = state.get("sw")
    if sw is not None:
        mask |= _SW
        base = base if base is not None else r
        if base is not None and type(sw) is int and type(base) is int and _I32_MIN <= sw - base <= _I32_MAX:
            mask |= _SW32
            out += _I32.pack(sw - base)
        else:
            _int(out, sw)
    fs = state.get("fs")
    if fs is not None:
        mask |= _FS
        _int(out, fs)
    cs = state.get("cs")
    if cs:
        mask |= _CS
        if type(cs) is not int or not 0 < cs < 256:
            raise _Unfit
        out.append(cs)
    os_ = state.get("os")
    if os_ is not None:
        mask |= _OS
        if os_ not in _ORPHAN:
            raise _Unfit
        out.append(_ORPHAN.index(os_))
        _int(out, state.get("orev", 0), _U32)
    elif "orev" in state:
        raise _Unfit
    sig = state.get("sig")
    if sig is not None:
        mask |= _SIG
        if not isinstance(sig, list) or len(sig) not in (3, 4) or sig[0] not in _STATUSES:
            raise _Unfit
        out.append(_STATUSES.index(sig[0]))
        # mode: bit0 sig[1] stored (else == a[0]); bits 1-2: sig[2] None / == r / stored; bits 3-4: sig[3]
        same_a = a is not None and sig[1] == a[0] and type(sig[1]) is int
        mode = 0 if same_a else 1
        mode |= (0 if sig[2] is None else 1 if sig[2] == r and type(sig[2]) is int else 2) << 1
        if len(sig) == 4:
            if sig[3] not in _SUSPECT:
                raise _Unfit
            mode |= (1 + _SUSPECT.index(sig[3])) << 3
        out.append(mode)
        if not same_a:
            _int(out, sig[1])
        if (mode >> 1) & 3 == 2:
            _int(out, sig[2])
    rev = state.get("rev")
    if rev is not None:
        mask |= _REV
        _int(out, rev, _U32)
    if a is not None:  # last: a decoder finds it as the tail
        out += _segment(a)
    _HEAD.pack_into(out, 0, VERSION, mask)
    return bytes(out)


_WAITING = struct.Struct("<BHHqi")  # the shapes nearly every state has, packed in one call
_OVERDUE = struct.Struct("<BHHqiBBI")
_DONE = struct.Struct("<BHHqiiBBI")
_FAST_KEYS = {"id", "a", "r", "sw", "p", "sig", "rev"}
_M_WAITING = _P | _A | _SW | _SW32
_M_OVERDUE = _M_WAITING | _SIG | _REV
_M_DONE = _M_OVERDUE | _R | _R32


def _fast(state: dict[str, Any]) -> bytes | None:
    """Waiting, overdue and joined states as `_compact` writes them, faster; None: not one."""
    if not _FAST_KEYS.issuperset(state):
        return None
    a, r, sw, sig = state.get("a"), state.get("r"), state.get("sw"), state.get("sig")
    p = state.get("p")
    if a is None or p is None or sw is None or len(a) != 7 or type(a[0]) is not int or type(sw) is not int:
        return None
    a0 = a[0]
    if sig is None:
        if r is not None or "rev" in state:
            return None
        return _WAITING.pack(VERSION, _M_WAITING, p, a0, sw - a0) + _segment(a)
    rev = state.get("rev")
    if len(sig) != 3 or sig[1] != a0 or type(sig[1]) is not int or rev is None or sig[0] not in _STATUSES:
        return None
    status = _STATUSES.index(sig[0])
    if r is None:
        if sig[2] is not None:
            return None
        return _OVERDUE.pack(VERSION, _M_OVERDUE, p, a0, sw - a0, status, 0, rev) + _segment(a)
    if type(r) is not int or sig[2] not in (None, r):
        return None
    mode = 0 if sig[2] is None else 2
    return _DONE.pack(VERSION, _M_DONE, p, a0, r - a0, sw - a0, status, mode, rev) + _segment(a)


def encode(state: dict[str, Any]) -> bytes:
    """The table value for `state` (compact; JSON when the compact format cannot hold it)."""
    try:
        fast = _fast(state)
        if fast is not None:
            return fast
    except (struct.error, TypeError, _Unfit):
        pass  # out of range for the fast shapes: the general encoder decides
    try:
        return _compact(state)
    except _Unfit:
        # orjson's bytes keep a ~4 KiB buffer: copy to the exact size before the table keeps it
        return bytes(bytearray(orjson.dumps(state)))


def _rstr(raw: bytes, i: int) -> tuple[str, int]:
    n = raw[i]
    return raw[i + 1:i + 1 + n].decode("utf-8"), i + 1 + n


def _renum(raw: bytes, i: int, values: tuple[str, ...]) -> tuple[str, int]:
    c = raw[i]
    if c == _ESC:
        return _rstr(raw, i + 1)
    return values[c], i + 1


def decode(raw: bytes, key: bytes) -> dict[str, Any]:
    """The state dict of table value `raw` stored under `key` (the message id).

    Reads both this format and the JSON states of older versions. Raises ValueError on a
    value that is neither (a corrupt record)."""
    if raw[:1] == b"{":
        return orjson.loads(raw)
    if raw[:1] != _V:
        raise ValueError(f"join state of {key!r}: unknown encoding {raw[:1]!r}")
    try:
        _, mask = _HEAD.unpack_from(raw, 0)
        i = 3
        state: dict[str, Any] = {"id": key.decode("utf-8"), "a": None, "r": None}
        if mask & _P:
            state["p"] = _U16.unpack_from(raw, i)[0]
            i += 2
        a0 = None
        if mask & _A:
            a0 = _I64.unpack_from(raw, i)[0]
            i += 8
        for bit, narrow, name in ((_R, _R32, "r"), (_SW, _SW32, "sw")):
            if mask & bit:
                if mask & narrow:
                    base = a0 if a0 is not None else state["r"]
                    state[name] = base + _I32.unpack_from(raw, i)[0]
                    i += 4
                else:
                    state[name] = _I64.unpack_from(raw, i)[0]
                    i += 8
        if mask & _FS:
            state["fs"] = _I64.unpack_from(raw, i)[0]
            i += 8
        if mask & _CS:
            state["cs"] = raw[i]
            i += 1
        if mask & _OS:
            state["os"] = _ORPHAN[raw[i]]
            state["orev"] = _U32.unpack_from(raw, i + 1)[0]
            i += 5
        if mask & _SIG:
            status, mode = _STATUSES[raw[i]], raw[i + 1]
            i += 2
            if mode & 1:
                s1 = _I64.unpack_from(raw, i)[0]
                i += 8
            else:
                s1 = a0
            m2 = (mode >> 1) & 3
            if m2 == 2:
                s2 = _I64.unpack_from(raw, i)[0]
                i += 8
            else:
                s2 = state["r"] if m2 == 1 else None
            sig = [status, s1, s2]
            if mode >> 3:
                sig.append(_SUSPECT[(mode >> 3) - 1])
            state["sig"] = sig
        if mask & _REV:
            state["rev"] = _U32.unpack_from(raw, i)[0]
            i += 4
        if mask & _A:
            seg = raw[i:]
            fields = _FIELDS.get(seg)
            if fields is None:
                cls, j = _renum(seg, 0, _CLASSES)
                prio, j = _renum(seg, j, _PRIORITIES)
                src, j = _renum(seg, j, _SOURCES)
                account, j = _rstr(seg, j)
                mta, j = _rstr(seg, j)
                err, j = _rstr(seg, j)
                if j != len(seg):
                    raise ValueError(f"join state of {key!r}: corrupt accepted fields")
                fields = (account, cls, prio, src, mta, err)
                if len(_FIELDS) >= _CACHE_MAX:
                    _FIELDS.clear()
                _FIELDS[seg] = fields
            state["a"] = [a0, *fields]
        elif i != len(raw):
            raise ValueError(f"join state of {key!r}: trailing bytes")
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"join state of {key!r}: truncated or corrupt ({exc})") from None
    return state
