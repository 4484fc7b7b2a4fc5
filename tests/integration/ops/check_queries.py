#!/usr/bin/env python3
"""Checks that the Prometheus alert rules and the Grafana dashboard only query what acmedge
exports.

usage: check_queries.py METRICS_FILE SRC_DIR ALERTS_YML DASHBOARD_JSON

METRICS_FILE is a /metrics answer of a running acmedge. For every PromQL expression (alert
`expr`, panel `targets[].expr`, templating `query`): each metric name must be an exported family
(histograms also as _bucket/_sum/_count; `up` is Prometheus's own), each label matched in a
selector must be one the family's samples carry (or `instance`/`job`, which Prometheus adds),
and each matched label value must occur as a string in the C sources. Prints one line per
problem and exits 1, or prints a summary and exits 0.
"""
import json
import os
import re
import sys

import yaml

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan", "time"}
PROM_OWN = {"up"}
TARGET_LABELS = {"instance", "job"}


def exported(metrics_text):
    families, labels = {}, {}
    for line in metrics_text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            families[m.group(1)] = m.group(2)
            labels.setdefault(m.group(1), set())
            continue
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?", line)
        name = m.group(1)
        fam = name
        for suf in ("_bucket", "_sum", "_count"):
            if name.endswith(suf) and families.get(name[: -len(suf)]) == "histogram":
                fam = name[: -len(suf)]
        for lm in re.finditer(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""):
            labels.setdefault(fam, set()).add(lm.group(1))
    return families, labels


def family_of(name, families):
    if name in families:
        return name
    for suf in ("_bucket", "_sum", "_count"):
        base = name[: -len(suf)]
        if name.endswith(suf) and families.get(base) == "histogram":
            return base
    return None


def queries_of(alerts, dashboard):
    out = []
    for g in alerts.get("groups", []):
        for r in g.get("rules", []):
            out.append(("alert " + r.get("alert", "?"), r["expr"]))
    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append(("panel " + p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))
    walk(dashboard.get("panels", []))
    for v in dashboard.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.match(r"label_values\((\w+)\s*,\s*(\w+)\)", q or "")
        if m:
            out.append(("variable " + v["name"], m.group(1) + "{" + m.group(2) + '!=""}'))
    return out


def check_expr(where, expr, families, labels, sources, problems):
    names = 0
    # Selectors: name{matchers}
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", expr):
        fam = family_of(m.group(1), families)
        for lm in re.finditer(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"([^"]*)"', m.group(2)):
            lname, op, val = lm.groups()
            if lname in TARGET_LABELS or m.group(1) in PROM_OWN:
                continue
            if fam and labels.get(fam) and lname not in labels[fam]:
                problems.append("%s: %s has no label %s (exported: %s)" % (where, m.group(1), lname, sorted(labels[fam])))
            if op == "=" and val and '"%s"' % val not in sources:
                problems.append("%s: label value %s=\"%s\" never appears in the sources" % (where, lname, val))
    stripped = re.sub(r'"[^"]*"', '""', expr)
    stripped = re.sub(r"\{[^}]*\}", "", stripped)
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)
    stripped = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", stripped)
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", stripped):
        tok = m.group(0)
        rest = stripped[m.end():].lstrip()
        if rest.startswith("(") or tok.lower() in KEYWORDS or tok.startswith("$"):
            continue
        if stripped[max(0, m.start() - 1)] == "$":
            continue
        if tok in PROM_OWN:
            names += 1
            continue
        if family_of(tok, families) is None:
            problems.append("%s: metric %s is not exported by acmedge" % (where, tok))
        names += 1
    if names == 0:
        problems.append("%s: no metric found in %r" % (where, expr))
    return names


def main():
    metrics_file, src_dir, alerts_file, dash_file = sys.argv[1:5]
    families, labels = exported(open(metrics_file).read())
    if not families:
        print("no metric families in " + metrics_file)
        return 1
    sources = ""
    for root, _, files in os.walk(src_dir):
        for f in files:
            if f.endswith(".c"):
                sources += open(os.path.join(root, f), encoding="utf-8", errors="replace").read()
    alerts = yaml.safe_load(open(alerts_file))
    dashboard = json.load(open(dash_file))
    problems, total = [], 0
    qs = queries_of(alerts, dashboard)
    for where, expr in qs:
        total += check_expr(where, expr, families, labels, sources, problems)
    required = {"AcmedgeCertificateExpiringSoon", "AcmedgeIssuanceFailing", "AcmedgeStorageDown",
                "AcmedgeRateLimitCapNear"}
    have = {r.get("alert") for g in alerts.get("groups", []) for r in g.get("rules", [])}
    for r in sorted(required - have):
        problems.append("alerts.yml lacks the rule " + r)
    for g in alerts.get("groups", []):
        for r in g.get("rules", []):
            if "severity" not in r.get("labels", {}) or "summary" not in r.get("annotations", {}):
                problems.append("alert %s needs labels.severity and annotations.summary" % r.get("alert"))
    for p in problems:
        print(p)
    if problems:
        return 1
    print("ok: %d queries, %d metric references, %d families exported" % (len(qs), total, len(families)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
