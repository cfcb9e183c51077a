#!/bin/sh
# Installs the Debian packages named as arguments that are missing; silent
# when nothing is.  Needs root (or sudo) only when something is missing.
missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
        missing="$missing $p"
done
# npm (for the independent Parquet reader of the tests) comes with nodejs
# from elsewhere, or as Debian's own package.
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ -z "$missing" ] && exit 0
# nodejs may come from elsewhere than Debian; a working node is enough.
case " $missing " in *" nodejs "*) command -v node >/dev/null 2>&1 &&
    missing=$(echo "$missing" | sed 's/ nodejs//') ;; esac
[ -z "$missing" ] && exit 0
echo "make deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null || { echo "make deps: apt-get update failed" >&2; exit 1; }
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends $missing >/dev/null ||
    { echo "make deps: could not install:$missing" >&2; exit 1; }
