#!/usr/bin/env bash
# Installs the Debian packages the Rust build needs, and only those missing:
# rdkafka's `cmake-build` compiles librdkafka (cmake, a C/C++ toolchain, and the
# -dev libraries of the features we enable).
set -euo pipefail

PACKAGES=(cmake make g++ pkg-config libssl-dev libsasl2-dev libzstd-dev libcurl4-openssl-dev zlib1g-dev python3)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-build-deps: missing packages: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "install-build-deps: installing ${missing[*]}" >&2
DEBIAN_FRONTEND=noninteractive apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
