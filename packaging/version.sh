#!/bin/sh
# Prints the package version, made from git describe (Makefile PKG_VERSION):
#   v1.2.3                    -> 1.2.3
#   v1.2.3-4-gabc1234         -> 1.2.3+git4.gabc1234   (4 commits after the tag: sorts after it)
#   v1.2.3-rc1                -> 1.2.3-rc1             (nfpm writes 1.2.3~rc1: sorts before 1.2.3)
#   no v* tag yet             -> 0.0.0+gitN.gHASH      (N: commits in all)
# A tree with uncommitted changes adds "dirty" to the build metadata.
set -e
cd "$(dirname "$0")/.."
if ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo 0.0.0+unknown
	exit 0
fi
d=$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null) ||
	d=v0.0.0-$(git rev-list --count HEAD)-g$(git describe --always --dirty)
d=${d#v}
dirty=
case $d in *-dirty)
	dirty=1
	d=${d%-dirty}
	;;
esac
meta=
if expr "$d" : '.*-[0-9][0-9]*-g[0-9a-f][0-9a-f]*$' >/dev/null; then
	hash=${d##*-g}
	d=${d%-g*}
	meta=git${d##*-}.g$hash
	d=${d%-*}
fi
if [ -n "$dirty" ]; then
	meta=${meta:+$meta.}dirty
fi
echo "$d${meta:++$meta}"
