#!/bin/sh
# Build the local test images (no registry is reachable): local/busybox:1, a rootfs of
# busybox-static and its applet links.
set -eu
if docker image inspect local/busybox:1 >/dev/null 2>&1; then exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/www" "$tmp/tmp" "$tmp/etc"
cp /bin/busybox "$tmp/bin/busybox"
for a in $("$tmp/bin/busybox" --list); do
  [ "$a" = busybox ] || ln -s busybox "$tmp/bin/$a"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$tmp/etc/passwd"
echo 'root:x:0:' > "$tmp/etc/group"
echo 'hello from pgo' > "$tmp/www/index.html"
tar -C "$tmp" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - local/busybox:1 >/dev/null
echo "built local/busybox:1"
