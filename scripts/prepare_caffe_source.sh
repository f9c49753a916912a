#!/usr/bin/env bash
# Prepare the Caffe source tree for a build directory.
#
#   prepare_caffe_source.sh SRC_DIR LAYERS_DIR            unpack + patch + overlay
#   prepare_caffe_source.sh --overlay-only SRC_DIR LAYERS_DIR
#
# SRC_DIR is build-local (the CMake build writes pycaffe into it). The source
# comes from CAFFE_SOURCE_DIR (an existing checkout at 99bd997) when set, else
# from the pinned, checksummed tarball (scripts/fetch_caffe_source.sh). The
# patch queue LAYERS_DIR/patches/*.patch is applied in order, then every other
# file below LAYERS_DIR is copied to the same relative path (overlay files are
# new files: upstream files change through patches only). The overlay's file
# list is kept in SRC_DIR/.hrenet-overlay, so that a file deleted from
# LAYERS_DIR is deleted from SRC_DIR too and stops compiling. A stamp of the
# source and the patches' content makes a re-run with nothing changed a no-op;
# a changed queue re-unpacks into a temporary directory and swaps it in, so a
# failed patch never leaves a half-patched tree behind.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

overlay_only=0
if [ "${1:-}" = "--overlay-only" ]; then overlay_only=1; shift; fi
if [ $# -ne 2 ]; then
  echo "usage: $0 [--overlay-only] SRC_DIR LAYERS_DIR" >&2
  exit 2
fi
src=$1
layers=$(cd "$2" && pwd)

# Copy LAYERS_DIR/** (except patches/) over DEST, touching only files whose
# content differs, and delete the files of the previous overlay that
# LAYERS_DIR no longer has. Prints the number of files added or deleted.
overlay() {
  local dest=$1 new=0 rel
  local list="$dest/.hrenet-overlay"
  local current
  current=$(mktemp)
  while IFS= read -r -d '' f; do
    rel=${f#"$layers"/}
    printf '%s\n' "$rel" >> "$current"
    if [ ! -e "$dest/$rel" ]; then
      new=$((new + 1))
    elif cmp -s "$f" "$dest/$rel"; then
      continue
    fi
    mkdir -p "$(dirname "$dest/$rel")"
    cp "$f" "$dest/$rel.tmp.$$" && mv "$dest/$rel.tmp.$$" "$dest/$rel"
  done < <(find "$layers" -path "$layers/patches" -prune -o -type f -print0)
  if [ -f "$list" ]; then
    while IFS= read -r rel; do
      if [ -n "$rel" ] && ! grep -qxF -- "$rel" "$current" && [ -e "$dest/$rel" ]; then
        rm -f "$dest/$rel"
        new=$((new + 1))
      fi
    done < "$list"
  fi
  sort "$current" > "$list.tmp.$$" && mv "$list.tmp.$$" "$list"
  rm -f "$current"
  echo "$new"
}

if [ "$overlay_only" = 1 ]; then
  [ -d "$src" ] || { echo "error: $src does not exist; run the full prepare first" >&2; exit 1; }
  new=$(overlay "$src")
  if [ "$new" -gt 0 ]; then
    # Upstream's CMake globs sources at configure time: make it glob again.
    touch "$src/CMakeLists.txt"
    echo "overlay: $new file(s) added or deleted; Caffe will re-configure"
  fi
  exit 0
fi

if [ -n "${CAFFE_SOURCE_DIR:-}" ]; then
  [ -f "$CAFFE_SOURCE_DIR/src/caffe/proto/caffe.proto" ] || {
    echo "error: CAFFE_SOURCE_DIR=$CAFFE_SOURCE_DIR is not a Caffe checkout (no src/caffe/proto/caffe.proto)" >&2
    exit 1; }
  origin="dir:$(cd "$CAFFE_SOURCE_DIR" && pwd)"
else
  tarball=$("$here/fetch_caffe_source.sh" ${CAFFE_CACHE_DIR:+"$CAFFE_CACHE_DIR"})
  origin="tar:$(sha256sum "$tarball" | cut -d' ' -f1)"
fi

shopt -s nullglob
patches=("$layers"/patches/*.patch)
stamp_value=$( { echo "$origin"; cat "${patches[@]}" /dev/null; } | sha256sum | cut -d' ' -f1)
if [ -f "$src/.hrenet-stamp" ] && [ "$(cat "$src/.hrenet-stamp")" = "$stamp_value" ]; then
  overlay "$src" >/dev/null
  exit 0
fi

parent=$(dirname "$src")
mkdir -p "$parent"
tmp=$(mktemp -d "$parent/.caffe-src.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if [ -n "${CAFFE_SOURCE_DIR:-}" ]; then
  (cd "$CAFFE_SOURCE_DIR" && tar --exclude=.git --exclude=build -cf - .) | tar -xf - -C "$tmp"
else
  tar -xzf "$tarball" -C "$tmp"
fi
for p in "${patches[@]}"; do
  if ! patch -p1 -N -s -d "$tmp" < "$p"; then
    echo "error: patch $(basename "$p") does not apply to the pinned Caffe source" >&2
    exit 1
  fi
done
overlay "$tmp" >/dev/null
echo "$stamp_value" > "$tmp/.hrenet-stamp"
rm -rf "$src.old"
[ -e "$src" ] && mv "$src" "$src.old"
mv "$tmp" "$src"
trap - EXIT
rm -rf "$src.old"
echo "prepared Caffe source in $src (${#patches[@]} patches)"
