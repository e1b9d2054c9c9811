#!/bin/sh
# Before the files go (deb: prerm remove | upgrade NEW-VERSION | ...; rpm: %preun 0 on erase,
# 1 on upgrade). On removal: stop the service and disable it. An upgrade leaves both alone;
# postinstall restarts a running service on the new binary.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac
if command -v systemctl >/dev/null 2>&1; then
	if [ -d /run/systemd/system ]; then
		systemctl stop xoauth2-proxy.service || true
	fi
	systemctl disable xoauth2-proxy.service || true
fi
exit 0
