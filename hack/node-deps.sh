#!/usr/bin/env bash
# Host packages the tests need beyond Python (Debian): containerd and runc run the local
# node's pods, the CNI plugins give them a network, iptables and conntrack serve kube-proxy,
# buildah and debootstrap build the images without a registry or a Docker engine; OpenSSH's
# sshd is the real SSH server of the ssh action's tests and of `make demo`. Idempotent; needs
# root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/debian-packages.sh" containerd runc containernetworking-plugins iptables \
    conntrack buildah debootstrap openssh-server openssh-client
