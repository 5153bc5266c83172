#!/bin/sh
# Fills benches/photos/ (gitignored) with real photos for `mediafleet bench image`.
#
# Source: Debian 12's plasma-workspace-wallpapers package (KDE wallpapers, CC-BY-SA/LGPL; about 94 MB), fetched
# with apt-get download (no install) and unpacked with dpkg-deb. From three of its 5120×2880 JPEGs it also makes,
# with libvips (apt libvips-tools): a progressive copy, and 100 MP baseline and progressive upscales (upscaled
# photos, not noise), for the memory figures in BENCHMARKS.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/photos"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
(cd "$tmp" && apt-get download plasma-workspace-wallpapers >/dev/null)
dpkg-deb -x "$tmp"/plasma-workspace-wallpapers_*.deb "$tmp/x"
src="$tmp/x/usr/share/wallpapers"
for name in SafeLanding Volna Shell; do
    cp "$src/$name/contents/images/5120x2880.jpg" "$out/$(echo "$name" | tr 'A-Z' 'a-z')-5120x2880.jpg"
done
vips copy "$out/volna-5120x2880.jpg" "$out/volna-5120x2880-progressive.jpg[Q=90,interlace,strip]"
# 13334×7500 ≈ 100 MP.
vips resize "$out/safelanding-5120x2880.jpg" "$out/safelanding-100mp-baseline.jpg[Q=85,strip]" 2.6043
vips copy "$out/safelanding-100mp-baseline.jpg" "$out/safelanding-100mp-progressive.jpg[Q=85,interlace,strip]"
ls -l "$out"
