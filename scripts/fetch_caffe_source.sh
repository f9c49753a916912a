#!/usr/bin/env bash
# Fetch the pinned BVLC Caffe source tarball through apt's own source download,
# verify its SHA-256 and cache it outside the checkout.
#
# Usage: fetch_caffe_source.sh [CACHE_DIR]
# Prints the path of the verified tarball on stdout.
#
# The deb-src entry is built from the mirror URI and keyring that this machine's
# own apt configuration already uses, so no host name lives in this repository.
# The system's apt configuration is left untouched: a private sources list and a
# private lists directory are passed with -o options.
set -euo pipefail

PKG=caffe
VERSION=1.0.0+git20180821.99bd997-8
SUITE=bullseye
TARBALL=caffe_1.0.0+git20180821.99bd997.orig.tar.gz
SHA256=e0eb3f06794f7402c77b7dec8e8480273ee1a1bb192e9122b621a69d4147ad0c

cache_dir=${1:-${CAFFE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hrenet-caffe}}
mkdir -p "$cache_dir"
out="$cache_dir/$TARBALL"

verify() {
  echo "$SHA256  $1" | sha256sum --check --status
}

if [ -f "$out" ] && verify "$out"; then
  echo "$out"
  exit 0
fi

# The machine's Debian mirror URI and keyring, from deb822 .sources or sources.list.
uri=""; keyring=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  # first stanza whose Suites are a plain Debian suite (not -security)
  read -r uri keyring < <(awk '
    BEGIN { RS=""; FS="\n" }
    {
      u=""; k=""; s=""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^URIs:/)      { sub(/^URIs:[ \t]*/, "", $i); split($i, a, /[ \t]+/); u = a[1] }
        if ($i ~ /^Signed-By:/) { sub(/^Signed-By:[ \t]*/, "", $i); k = $i }
        if ($i ~ /^Suites:/)    { s = $i }
      }
      if (u != "" && s !~ /-security/ && u !~ /security/) { print u, k; exit }
    }' "$f") || true
  [ -n "$uri" ] && break
done
if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
  uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
fi
if [ -z "$uri" ]; then
  echo "error: no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list;" \
       "set CAFFE_SOURCE_DIR to an existing BVLC Caffe checkout at commit 99bd997 instead" >&2
  exit 1
fi
[ -n "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg

work=$(mktemp -d "$cache_dir/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/download"
echo "deb-src [signed-by=$keyring] $uri $SUITE main" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Get::List-Cleanup=0")
mkdir -p "$work/cache/archives/partial"
echo "fetching $PKG=$VERSION source from the $SUITE archive of this machine's Debian mirror" >&2
apt-get "${apt_opts[@]}" update -qq >&2
(cd "$work/download" && apt-get "${apt_opts[@]}" source --download-only -qq "$PKG=$VERSION" >&2)
if [ ! -f "$work/download/$TARBALL" ]; then
  echo "error: apt did not deliver $TARBALL; set CAFFE_SOURCE_DIR to an existing checkout instead" >&2
  exit 1
fi
if ! verify "$work/download/$TARBALL"; then
  echo "error: SHA-256 of $TARBALL does not match $SHA256; refusing to build from it" >&2
  exit 1
fi
mv "$work/download/$TARBALL" "$out.tmp" && mv "$out.tmp" "$out"
echo "$out"
