#!/usr/bin/env python3
"""Strict checker for the Prometheus text exposition format (0.0.4), for the integration tests.

usage: prom_check.py FILE [--value SERIES]...
  Exits 1 with "FILE:LINE: problem" on the first violation. With --value, prints the value of each
  named series (e.g. 'acmedge_issuance_successes_total' or
  'acmedge_handshakes_total{outcome="known"}'), one per line; a missing series is an error.

Checked: line syntax (metric and label names, label value escapes, float values, optional
timestamp), HELP/TYPE at most once per family and before its samples, a family's samples not
interleaved with another family's, no duplicate series, counters named *_total, histograms with
cumulative buckets, a +Inf bucket equal to _count, and _sum/_count present; the text ends with a
newline.
"""
import math
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class Bad(Exception):
    pass


def parse_value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", s):
        raise Bad("bad sample value %r" % s)
    return float(s)


def parse_labels(s, pos):
    """Parses '{a="x",b="y"}' starting at s[pos] == '{'; returns (dict, next position)."""
    labels = {}
    pos += 1
    while True:
        if pos < len(s) and s[pos] == "}":
            return labels, pos + 1
        m = re.compile(LABEL).match(s, pos)
        if not m:
            raise Bad("bad label name at column %d" % (pos + 1))
        name = m.group(0)
        pos = m.end()
        if s[pos:pos + 2] != '="':
            raise Bad("expected =\" after label %s" % name)
        pos += 2
        val = []
        while True:
            if pos >= len(s):
                raise Bad("unterminated label value")
            c = s[pos]
            if c == "\\":
                nxt = s[pos + 1:pos + 2]
                if nxt == "\\":
                    val.append("\\")
                elif nxt == '"':
                    val.append('"')
                elif nxt == "n":
                    val.append("\n")
                else:
                    raise Bad("bad escape \\%s in label value" % nxt)
                pos += 2
                continue
            if c == '"':
                pos += 1
                break
            val.append(c)
            pos += 1
        if name in labels:
            raise Bad("label %s repeated" % name)
        labels[name] = "".join(val)
        if pos < len(s) and s[pos] == ",":
            pos += 1
            continue
        if pos < len(s) and s[pos] == "}":
            return labels, pos + 1
        raise Bad("expected , or } in label set")


def family_of(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if types.get(base) in ("histogram", "summary"):
                return base
    return name


def series_key(name, labels):
    return name + "{" + ",".join('%s="%s"' % (k, labels[k]) for k in sorted(labels)) + "}"


def check(text):
    if text and not text.endswith("\n"):
        raise Bad("text does not end with a newline")
    types, helps = {}, set()
    seen_families, current = [], None
    series = {}
    hist = {}
    for lineno, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        try:
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    name = parts[2]
                    if not re.fullmatch(NAME, name):
                        raise Bad("bad metric name %r" % name)
                    if name in seen_families and name != current:
                        raise Bad("%s for %s after its samples" % (parts[1], name))
                    if parts[1] == "HELP":
                        if name in helps:
                            raise Bad("second HELP for %s" % name)
                        helps.add(name)
                    else:
                        if len(parts) != 4 or parts[3] not in TYPES:
                            raise Bad("bad TYPE line")
                        if name in types:
                            raise Bad("second TYPE for %s" % name)
                        if name in series_names(series, name):
                            raise Bad("TYPE for %s after its samples" % name)
                        types[name] = parts[3]
                        if parts[3] == "counter" and not name.endswith("_total"):
                            raise Bad("counter %s should end in _total" % name)
                continue
            if not line.strip():
                raise Bad("empty line")
            m = re.compile(NAME).match(line)
            if not m:
                raise Bad("bad metric name")
            name = m.group(0)
            pos = m.end()
            labels = {}
            if pos < len(line) and line[pos] == "{":
                labels, pos = parse_labels(line, pos)
            rest = line[pos:]
            if not rest.startswith(" "):
                raise Bad("expected a space before the value")
            fields = rest.split()
            if len(fields) not in (1, 2):
                raise Bad("expected value [timestamp]")
            value = parse_value(fields[0])
            if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
                raise Bad("bad timestamp")
            fam = family_of(name, types)
            if fam != current:
                if fam in seen_families:
                    raise Bad("samples of %s are not together" % fam)
                seen_families.append(fam)
                current = fam
            key = series_key(name, labels)
            if key in series:
                raise Bad("duplicate series %s" % key)
            series[key] = value
            t = types.get(fam)
            if t == "counter" and (value < 0 or math.isnan(value)):
                raise Bad("counter %s is negative" % key)
            if t == "histogram":
                h = hist.setdefault(fam, {})
                other = {k: v for k, v in labels.items() if k != "le"}
                g = h.setdefault(series_key("", other), {"buckets": [], "sum": None, "count": None})
                if name == fam + "_bucket":
                    if "le" not in labels:
                        raise Bad("bucket without le")
                    g["buckets"].append((parse_value(labels["le"]), value))
                elif name == fam + "_sum":
                    g["sum"] = value
                elif name == fam + "_count":
                    g["count"] = value
                else:
                    raise Bad("unexpected sample %s in histogram %s" % (name, fam))
        except Bad as e:
            raise Bad("%d: %s" % (lineno, e))
    for fam, groups in hist.items():
        for lab, g in groups.items():
            b = g["buckets"]
            if not b or b[-1][0] != math.inf:
                raise Bad("histogram %s%s has no +Inf bucket" % (fam, lab))
            for (le1, v1), (le2, v2) in zip(b, b[1:]):
                if le2 <= le1:
                    raise Bad("histogram %s buckets not in increasing le order" % fam)
                if v2 < v1:
                    raise Bad("histogram %s buckets not cumulative" % fam)
            if g["count"] is None or g["sum"] is None:
                raise Bad("histogram %s lacks _sum or _count" % fam)
            if g["count"] != b[-1][1]:
                raise Bad("histogram %s: _count != +Inf bucket" % fam)
    return series


def series_names(series, name):
    return {k.split("{", 1)[0] for k in series}


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    path, wanted = args[0], []
    i = 1
    while i < len(args):
        if args[i] == "--value" and i + 1 < len(args):
            wanted.append(args[i + 1])
            i += 2
        else:
            print("unknown argument %s" % args[i], file=sys.stderr)
            return 2
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        series = check(text)
    except Bad as e:
        print("%s:%s" % (path, e), file=sys.stderr)
        return 1
    for w in wanted:
        m = re.fullmatch(r"(%s)(\{.*\})?" % NAME, w)
        if not m:
            print("bad series %r" % w, file=sys.stderr)
            return 2
        labels = parse_labels(m.group(2), 0)[0] if m.group(2) else {}
        key = series_key(m.group(1), labels)
        if key not in series:
            print("%s: no series %s" % (path, w), file=sys.stderr)
            return 1
        v = series[key]
        print(int(v) if v == int(v) else v)
    return 0


if __name__ == "__main__":
    sys.exit(main())
