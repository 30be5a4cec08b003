#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# install_deps.sh: installs the Debian packages inferd builds and tests with,
# only those that are missing (so a second run is instant). Needs root or sudo
# when something is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libpcre2-dev libjansson-dev libuv1-dev libmicrohttpd-dev
      python3 python3-pip python3-venv clang)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install_deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
