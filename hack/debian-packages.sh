#!/usr/bin/env bash
# Install the Debian packages named on the command line that are missing. Idempotent; needs
# root. A daemon among them is not started (policy-rc.d says no for the length of the
# install): openssh-server's postinst would otherwise start the system's sshd, and the tests
# and the demo start sshd themselves, each with its own config, port and keys.
set -euo pipefail
missing=()
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "debian-packages: need root to install: ${missing[*]}" >&2
    exit 1
fi
echo "debian-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
