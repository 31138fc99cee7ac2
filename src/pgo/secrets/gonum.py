"""Numbers and times as Go's strconv, encoding/json and time packages write and read them.

sops is written in Go: the text of a number decides a MAC (`ToBytes`) and what a decrypted
file holds, so these functions give the exact text Go gives, digit for digit. Python's
`repr(float)` and Go's shortest formatting choose the same digits (the shortest string that
reads back as the same float); only the layout around the digits differs.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

INT64 = range(-(1 << 63), 1 << 63)
UINT64_MAX = (1 << 64) - 1


def _digits(f: float) -> tuple[str, int]:
    """The shortest decimal digits of |f| and Go's decimal point position `dp`:
    |f| == 0.DIGITS * 10**dp. Zero is ("", 0)."""
    if f == 0:
        return "", 0
    _, digits, exp = Decimal(repr(abs(f))).as_tuple()
    text = "".join(map(str, digits)).rstrip("0")
    assert isinstance(exp, int)
    dp = len(digits) + exp
    return text, dp


def _special(f: float) -> str | None:
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    return None


def _fmt_f(neg: bool, digits: str, dp: int, prec: int) -> str:
    """Go's fmtF: %f with `prec` digits after the point (digits are exact here)."""
    if dp > 0:
        whole = digits[:dp] + "0" * max(dp - len(digits), 0)
    else:
        whole = "0"
    frac = ""
    if prec > 0:
        for i in range(prec):
            j = dp + i
            frac += digits[j] if 0 <= j < len(digits) else "0"
        frac = "." + frac
    return ("-" if neg else "") + whole + frac


def _fmt_e(neg: bool, digits: str, dp: int, letter: str) -> str:
    first = digits[:1] or "0"
    rest = digits[1:]
    exp = dp - 1 if digits else 0
    sign = "-" if exp < 0 else "+"
    return (("-" if neg else "") + first + ("." + rest if rest else "") + letter + sign
            + f"{abs(exp):02d}")


def format_float(f: float, fmt: str, prec: int = -1) -> str:
    """strconv.FormatFloat(f, fmt, prec, 64) for fmt 'f', 'e', 'g', 'G' and prec -1
    (shortest), or fmt 'f' with a fixed prec when f is integral (ValToString's case)."""
    special = _special(f)
    if special:
        return special
    neg = math.copysign(1.0, f) < 0
    digits, dp = _digits(f)
    if fmt == "f":
        if prec < 0:
            return _fmt_f(neg, digits, dp, max(len(digits) - dp, 0))
        if f != int(f):
            raise ValueError("fixed precision only for integral values")
        return _fmt_f(neg, digits, dp, prec)
    if fmt == "e":
        return _fmt_e(neg, digits, dp, "e")
    if fmt in ("g", "G"):
        exp = dp - 1  # Go: %e when the exponent is < -4 or >= 6 (shortest precision)
        if exp < -4 or exp >= 6:
            return _fmt_e(neg, digits, dp, "e" if fmt == "g" else "E")
        return _fmt_f(neg, digits, dp, max(len(digits) - dp, 0))
    raise ValueError(f"unsupported format {fmt!r}")


def json_float(f: float) -> str:
    """encoding/json's text of a float64 (ES6 style: %e only for tiny or huge values)."""
    if math.isnan(f) or math.isinf(f):
        raise ValueError("JSON has no NaN or infinity")
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        out = format_float(f, "e")
        m = re.match(r"^(.*e-)0(\d)$", out)
        return m.group(1) + m.group(2) if m else out
    return format_float(f, "f")


def val_to_string_float(f: float) -> str:
    """sops' stores.ValToString for a float: %G, with one decimal when it reads as an int."""
    out = format_float(f, "G")
    if "." not in out and "E" not in out:
        if math.isinf(f) or math.isnan(f):
            return out
        return format_float(f, "f", 1)
    return out


# strconv.ParseInt(s, 0, 64) and friends: sign, then 0x/0o/0b or a leading 0 (octal)
def parse_int_base0(s: str) -> int | None:
    """The value strconv.ParseInt/ParseUint(s, 0, ...) reads, without its range check; None
    when the syntax is not Go's (underscores must already be gone)."""
    neg = False
    if s[:1] in ("+", "-"):
        neg = s[0] == "-"
        s = s[1:]
    if not s:
        return None
    base = 10
    if s[0] == "0" and len(s) > 1:
        if s[1] in "xX":
            base, s = 16, s[2:]
        elif s[1] in "oO":
            base, s = 8, s[2:]
        elif s[1] in "bB":
            base, s = 2, s[2:]
        else:
            base, s = 8, s[1:]
    allowed = "0123456789abcdefABCDEF"[: {2: 2, 8: 8, 10: 10, 16: 22}[base]]
    if not s or any(c not in allowed for c in s):
        return None
    value = int(s, base)
    return -value if neg else value


_GO_DECIMAL_FLOAT = re.compile(
    r"^[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)$",
    re.IGNORECASE)


def parse_float(s: str) -> float | None:
    """strconv.ParseFloat(s, 64) for decimal text (and inf/nan); None on a syntax error or
    when it overflows (Go's ErrRange)."""
    if not _GO_DECIMAL_FLOAT.match(s):
        return None
    f = float(s)
    if math.isinf(f) and "inf" not in s.lower():
        return None
    return f


def parse_bool(s: str) -> bool | None:
    """strconv.ParseBool."""
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def parse_atoi(s: str) -> int | None:
    """strconv.Atoi on a 64-bit machine."""
    if not re.fullmatch(r"[+-]?[0-9]+", s):
        return None
    v = int(s)
    return v if v in INT64 else None


# -- time ----------------------------------------------------------------------------------

# go-yaml's timestamp layouts: "2006-1-2T15:4:5.999999999Z07:00" (also with a lower-case t),
# "2006-1-2 15:4:5.999999999" and "2006-1-2"
_TS = re.compile(
    r"^(?P<y>[0-9]{4})-(?P<mo>[0-9]{1,2})-(?P<d>[0-9]{1,2})"
    r"(?:(?P<sep>[Tt ])(?P<h>[0-9]{1,2}):(?P<mi>[0-9]{1,2}):(?P<s>[0-9]{1,2})"
    r"(?:\.(?P<frac>[0-9]+))?(?P<tz>Z|[+-][0-9]{2}:[0-9]{2})?)?$")
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def yaml_timestamp(s: str) -> str | None:
    """The RFC 3339 text (Go's time.RFC3339Nano, what sops MACs and writes) of a YAML
    timestamp as go-yaml v3 reads one, or None when `s` is not one."""
    m = _TS.match(s)
    if not m:
        return None
    y, mo, d = int(m["y"]), int(m["mo"]), int(m["d"])
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if not 1 <= mo <= 12 or not 1 <= d <= (_DAYS[mo - 1] if mo != 2 or leap else 28):
        return None
    date = f"{y:04d}-{mo:02d}-{d:02d}"
    if m["sep"] is None:
        return date + "T00:00:00Z"
    if m["sep"] == " " and m["tz"] is not None:
        return None  # the space layout has no zone
    if m["sep"] in "Tt" and m["tz"] is None:
        return None  # the T layout needs one
    h, mi, sec = int(m["h"]), int(m["mi"]), int(m["s"])
    if h > 23 or mi > 59 or sec > 59:
        return None
    frac = (m["frac"] or "")[:9].rstrip("0")
    tz = m["tz"] or "Z"
    if tz != "Z":
        hh, mm = int(tz[1:3]), int(tz[4:6])
        if hh > 24 or mm > 59:  # Go: hours beyond 24 are out of range
            return None
        if hh == 0 and mm == 0:
            tz = "Z"
    return f"{date}T{h:02d}:{mi:02d}:{sec:02d}" + (f".{frac}" if frac else "") + tz
