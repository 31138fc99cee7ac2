#!/bin/sh
# Build the local images the tests, benches and demo run (no registry is reachable):
#   pgoimg/busybox:1  a rootfs of busybox-static and its applet links;
#   pgoimg/caddy:1    pgoimg/busybox:1 plus Debian's /usr/bin/caddy and the shared libraries
#                     ldd says it needs (built only where caddy is installed).
# The tags are pgo's own, and each image carries a label with a digest of what it was built
# from: an image of that name with other content (another checkout's, an operator's) is
# built again, never trusted because its name exists.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
BUSYBOX=pgoimg/busybox:1
CADDY=pgoimg/caddy:1
RECIPE=2  # bump when what goes into the images changes

content() { docker image inspect -f '{{index .Config.Labels "pgo.content"}}' "$1" 2>/dev/null || true; }

want=$( { echo "$RECIPE"; sha256sum /bin/busybox; } | sha256sum | cut -c1-16)
if [ "$(content $BUSYBOX)" != "$want" ]; then
  mkdir -p "$tmp/bb/bin" "$tmp/bb/www" "$tmp/bb/tmp" "$tmp/bb/etc"
  cp /bin/busybox "$tmp/bb/bin/busybox"
  for a in $("$tmp/bb/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -s busybox "$tmp/bb/bin/$a"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$tmp/bb/etc/passwd"
  echo 'root:x:0:' > "$tmp/bb/etc/group"
  echo 'hello from pgo' > "$tmp/bb/www/index.html"
  tar -C "$tmp/bb" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' \
    -c "LABEL pgo.content=$want" - $BUSYBOX >/dev/null
  echo "built $BUSYBOX"
fi

if [ -x /usr/bin/caddy ]; then
  libs=$(ldd /usr/bin/caddy | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
  cwant=$( { echo "$RECIPE $want"; sha256sum /usr/bin/caddy; for l in $libs; do sha256sum "$(readlink -f "$l")"; done; } \
    | sha256sum | cut -c1-16)
  if [ "$(content $CADDY)" != "$cwant" ]; then
    ctx="$tmp/caddy"
    mkdir -p "$ctx/lib"
    cp /usr/bin/caddy "$ctx/caddy"
    # the libraries the dynamic linker resolves (libzstd, libc) and the linker itself
    {
      echo "FROM $BUSYBOX"
      echo 'COPY caddy /usr/bin/caddy'
    } > "$ctx/Dockerfile"
    for lib in $libs; do
      name=$(basename "$lib")
      cp -L "$lib" "$ctx/lib/$name"
      echo "COPY lib/$name $lib" >> "$ctx/Dockerfile"
    done
    echo 'ENV PATH=/usr/bin:/bin HOME=/root XDG_DATA_HOME=/data XDG_CONFIG_HOME=/config' >> "$ctx/Dockerfile"
    echo "LABEL pgo.content=$cwant" >> "$ctx/Dockerfile"
    echo 'CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]' >> "$ctx/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -q -t $CADDY "$ctx" >/dev/null 2>"$tmp/build.log" \
      || { cat "$tmp/build.log" >&2; exit 1; }
    echo "built $CADDY"
  fi
fi
