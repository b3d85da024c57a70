#!/usr/bin/env bash
# Host packages of the local node (Debian): containerd and runc run the pods, the CNI plugins
# give them a network, iptables and conntrack serve kube-proxy, buildah and debootstrap build
# the images without a registry or a Docker engine. Idempotent; needs root.
set -euo pipefail
packages=(containerd runc containernetworking-plugins iptables conntrack buildah debootstrap)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "node-deps: need root to install: ${missing[*]}" >&2
    exit 1
fi
echo "node-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
