#!/usr/bin/env python3
"""Generates apiserver/data/always_fields.json from upstream's Go API types.

Upstream's apiserver writes objects with Go's encoding/json, so a field is
in every response when its Go type is a non-pointer struct (`omitempty` never
drops a struct) or a scalar without `omitempty`. k8s-openapi models those
fields as `Option`, and clients (the Python client first of all) rely on
them being there: `svc.status.load_balancer`, `node.spec.taints`. This
script reads the Go types of one Kubernetes release and writes, per OpenAPI
definition name:

  "always": {field: zero value}  -- fields written even when empty
  "nested": {field: [shape, definition]} -- where to descend: shape is
            "one" (a struct or pointer to one), "list" or "map"

Usage: scripts/gen-always-fields.py MIRRORS_DIR > apiserver/data/always_fields.json
where MIRRORS_DIR holds git mirrors of kubernetes/{api,apimachinery,
apiextensions-apiserver,kube-aggregator} (as `fetch` lays them out:
MIRRORS_DIR/kubernetes+api/repo, ...). The release is TAG below.
"""

import json
import re
import subprocess
import sys

TAG = "v0.33.0"  # Kubernetes 1.33

# (mirror, package dir in it, Go import path, OpenAPI definition prefix)
SOURCES = [
    ("kubernetes+apimachinery", "pkg/apis/meta/v1", "k8s.io/apimachinery/pkg/apis/meta/v1",
     "io.k8s.apimachinery.pkg.apis.meta.v1"),
    ("kubernetes+apimachinery", "pkg/types", "k8s.io/apimachinery/pkg/types", "io.k8s.apimachinery.pkg.types"),
    ("kubernetes+apiextensions-apiserver", "pkg/apis/apiextensions/v1",
     "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1",
     "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1"),
    ("kubernetes+kube-aggregator", "pkg/apis/apiregistration/v1",
     "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1",
     "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1"),
]

# Types with their own JSON encoding: (import path, name) -> zero value as
# written, or SKIP where Go writes `null` (clients read null and absent alike,
# and a stored null would only get in patches' way).
SKIP = object()
SPECIAL = {
    ("k8s.io/apimachinery/pkg/apis/meta/v1", "Time"): SKIP,
    ("k8s.io/apimachinery/pkg/apis/meta/v1", "MicroTime"): SKIP,
    ("k8s.io/apimachinery/pkg/apis/meta/v1", "Duration"): "0s",
    ("k8s.io/apimachinery/pkg/apis/meta/v1", "FieldsV1"): SKIP,
    ("k8s.io/apimachinery/pkg/runtime", "RawExtension"): SKIP,
    ("k8s.io/apimachinery/pkg/runtime", "Object"): SKIP,
    ("k8s.io/apimachinery/pkg/util/intstr", "IntOrString"): 0,
    ("k8s.io/apimachinery/pkg/api/resource", "Quantity"): "0",
}

SCALARS = {
    "string": "",
    "bool": False,
    **{t: 0 for t in ["int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64",
                      "float32", "float64", "byte", "rune"]},
}


def git(mirrors, mirror, *args):
    return subprocess.run(["git", "-C", f"{mirrors}/{mirror}/repo", *args], check=True, capture_output=True,
                          text=True).stdout


def strip_comments(src):
    """Drops comments, leaving strings and struct tags alone."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if c in '"`':
            j = src.index(c, i + 1)
            while c == '"' and src[j - 1] == "\\":
                j = src.index(c, j + 1)
            out.append(src[i:j + 1])
            i = j + 1
        elif src.startswith("//", i):
            i = src.find("\n", i)
            i = n if i < 0 else i
        elif src.startswith("/*", i):
            i = src.index("*/", i) + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_imports(src):
    imports = {}
    for block in re.findall(r"^import\s*\((.*?)\)", src, flags=re.S | re.M):
        for line in block.strip().split("\n"):
            m = re.match(r'\s*(\w+)?\s*"([^"]+)"', line)
            if m:
                alias = m.group(1) or m.group(2).rsplit("/", 1)[-1]
                imports[alias] = m.group(2)
    for m in re.finditer(r'^import\s+(\w+)?\s*"([^"]+)"', src, flags=re.M):
        imports[m.group(1) or m.group(2).rsplit("/", 1)[-1]] = m.group(2)
    return imports


class Package:
    def __init__(self, path, prefix):
        self.path = path
        self.prefix = prefix
        self.structs = {}  # name -> [(field name or None for inline, type expr, tag opts, file imports)]
        self.aliases = {}  # name -> (type expr, file imports)
        self.group = None  # the API group, from register.go's GroupName


def load(mirrors, mirror, pkgdir, path, prefix):
    pkg = Package(path, prefix)
    files = git(mirrors, mirror, "ls-tree", "--name-only", TAG, pkgdir + "/").split()
    for f in files:
        name = f.rsplit("/", 1)[-1]
        if not name.endswith(".go") or name.endswith("_test.go") or name.startswith("zz_generated") or \
                name.startswith("generated") or "swagger_doc" in name or "fuzz" in name:
            continue
        src = strip_comments(git(mirrors, mirror, "show", f"{TAG}:{f}"))
        imports = parse_imports(src)
        g = re.search(r'GroupName\s*=\s*"([^"]*)"', src)
        if g:
            pkg.group = g.group(1)
        for m in re.finditer(r"^type\s+(\w+)\s+struct\s*\{(.*?)^\}", src, flags=re.S | re.M):
            fields = []
            for line in m.group(2).split("\n"):
                line = line.strip()
                if not line:
                    continue
                fm = re.match(r"^(?:(\w+)\s+)?([\w.*\[\]]+)\s*`(.*)`$", line)
                if not fm:
                    continue
                tag = re.search(r'json:"([^"]*)"', fm.group(3))
                if not tag:
                    continue
                parts = tag.group(1).split(",")
                jname, opts = parts[0], set(parts[1:])
                if jname == "-":
                    continue
                ident, ty = fm.group(1), fm.group(2)
                if "inline" in opts:
                    fields.append((None, ty, opts, imports))
                elif jname or ident:  # an embedded struct with a name is a field
                    fields.append((jname or ident, ty, opts, imports))
            pkg.structs[m.group(1)] = fields
        for m in re.finditer(r"^type\s+(\w+)\s+([\w.\[\]*]+)\s*$", src, flags=re.M):
            if m.group(2) != "struct":
                pkg.aliases[m.group(1)] = (m.group(2), imports)
    return pkg


def main():
    mirrors = sys.argv[1]
    sources = list(SOURCES)
    api_dirs = sorted({p.rsplit("/", 1)[0] for p in git(mirrors, "kubernetes+api", "ls-tree", "-r", "--name-only",
                                                              TAG).split() if p.endswith("/types.go")})
    for d in api_dirs:
        sources.append(("kubernetes+api", d, f"k8s.io/api/{d}", "io.k8s.api." + d.replace("/", ".")))
    pkgs = {path: load(mirrors, mirror, d, path, prefix) for mirror, d, path, prefix in sources}

    def resolve(ty, pkg, imports):
        """-> ("special", zero) | ("scalar", zero) | ("struct", pkg, name) | ("skip",)"""
        if "." in ty:
            alias, name = ty.split(".", 1)
            path = imports.get(alias)
            if path is None:
                return ("skip",)
            if (path, name) in SPECIAL:
                return ("special", SPECIAL[(path, name)])
            target = pkgs.get(path)
            if target is None:
                return ("skip",)
            return resolve(name, target, {})
        if (pkg.path, ty) in SPECIAL:
            return ("special", SPECIAL[(pkg.path, ty)])
        if ty in SCALARS:
            return ("scalar", SCALARS[ty])
        if ty in pkg.structs:
            return ("struct", pkg, ty)
        if ty in pkg.aliases:
            under, imps = pkg.aliases[ty]
            if under.startswith(("[]", "map[", "*")):
                return ("skip",)
            return resolve(under, pkg, imps)
        return ("skip",)

    table = {}

    def fields_of(pkg, name, seen=()):
        out = []
        for jname, ty, opts, imports in pkg.structs[name]:
            if jname is None:  # inline: the embedded struct's fields
                r = resolve(ty.lstrip("*"), pkg, imports)
                if r[0] == "struct":
                    out.extend(fields_of(r[1], r[2]))
                continue
            out.append((jname, ty, opts, imports, pkg))
        return out

    def entry(pkg, name):
        key = f"{pkg.prefix}.{name}"
        if key in table:
            return key
        table[key] = None  # recursion guard
        always, nested = {}, {}
        for jname, ty, opts, imports, fpkg in fields_of(pkg, name):
            omit = "omitempty" in opts or "omitzero" in opts
            shape, base = "one", ty
            pointer = base.startswith("*")
            base = base.lstrip("*")
            if base.startswith("[]"):
                shape, base = "list", base[2:].lstrip("*")
            elif base.startswith("map["):
                shape, base = "map", base[base.index("]") + 1:].lstrip("*")
            r = resolve(base, fpkg, imports)
            if shape == "one" and not pointer:
                if r[0] == "struct":
                    always[jname] = {}
                elif r[0] in ("scalar", "special") and r[1] is not SKIP and (r[0] == "special" or not omit):
                    always[jname] = r[1]
            if r[0] == "struct":
                child = entry(r[1], r[2])
                if table.get(child):
                    nested[jname] = [shape, child]
        table[key] = {k: v for k, v in (("always", always), ("nested", nested)) if v}
        return key

    for pkg in pkgs.values():
        for name in pkg.structs:
            if name[0].isupper():
                entry(pkg, name)
    # apiVersion and kind -> definition, for the kinds (TypeMeta inline).
    kinds = {}
    for pkg in pkgs.values():
        if pkg.group is None or pkg.path.startswith("k8s.io/apimachinery"):
            continue
        version = pkg.path.rsplit("/", 1)[-1]
        api_version = f"{pkg.group}/{version}" if pkg.group else version
        for name, fields in pkg.structs.items():
            if any(f[0] is None and f[1].endswith("TypeMeta") for f in fields) and table.get(f"{pkg.prefix}.{name}"):
                kinds[f"{api_version} {name}"] = f"{pkg.prefix}.{name}"
    out = {"release": TAG, "kinds": kinds, "types": {k: v for k, v in table.items() if v}}
    json.dump(out, sys.stdout, indent=None, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
