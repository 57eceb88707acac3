#!/usr/bin/env bash
# Installs the system packages Mutualis' trust infrastructure needs (Debian/Ubuntu):
#   softhsm2        PKCS#11 token for development and tests (keys never leave it)
#   opensc          pkcs11-tool, to inspect tokens by hand
#   poppler-utils   pdfsig, the independent PDF signature verifier
#   libnss3-tools   certutil, to build the NSS trust database pdfsig reads
#   openssl         the development RFC 3161 timestamp authority (`openssl ts`)
#   prometheus      promtool, which checks and unit-tests the alert rules in infra/prometheus
#
# Idempotent: installs only what is missing. Runs apt-get only as root; otherwise it prints
# the command to run and exits 0, so `make test` still works (the tests needing these skip).
set -euo pipefail

# package -> a file it provides, to detect it without dpkg on non-Debian systems
declare -A PROBE=(
  [softhsm2]=softhsm2-util
  [opensc]=pkcs11-tool
  [poppler-utils]=pdfsig
  [libnss3-tools]=certutil
  [openssl]=openssl
  [prometheus]=promtool
)

missing=()
for pkg in softhsm2 opensc poppler-utils libnss3-tools openssl prometheus; do
  if ! command -v "${PROBE[$pkg]}" >/dev/null 2>&1; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "system deps: all present (softhsm2 opensc poppler-utils libnss3-tools openssl prometheus)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "system deps: missing ${missing[*]}"
  echo "  install them with: sudo apt-get install -y ${missing[*]}"
  echo "  (tests that need them are skipped until then)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "system deps: missing ${missing[*]} and apt-get is not available; install them by hand"
  exit 0
fi

echo "system deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "system deps: installed ${missing[*]}"
