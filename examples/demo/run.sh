#!/bin/sh
# The demo: two services from local bare repositories, each with its own unix user, and pgod
# tracking them in the foreground:
#   demo   a team's web server (examples/demo/repo), controlled with pgoctl and an SSH key
#   proxy  the operator's Caddy (examples/demo/proxy, a root service), which pgod feeds the
#          routes of every service's `urls`: http://localhost:8088 shows the team's page
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
home=/var/lib/pgo-demo
user=pgo-demo
port=${PGO_DEMO_SSH_PORT:-2222}
mkdir -p "$home"
id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"

# upstream NAME SOURCE: a bare repository $home/NAME.git made from SOURCE, worked on in $home/NAME
upstream() {
    [ -d "$home/$1.git" ] && return 0
    rm -rf "$home/$1"
    cp -r "$2" "$home/$1"
    git -C "$home/$1" init -q -b main
    git -C "$home/$1" add -A
    git -C "$home/$1" -c user.name=demo -c user.email=demo@localhost commit -q -m "$1 service"
    git clone -q --bare "$home/$1" "$home/$1.git"
    git -C "$home/$1" remote add origin "$home/$1.git"
}
if [ ! -d "$home/work.git" ] && [ ! -f "$home/id_demo" ]; then
    ssh-keygen -q -t ed25519 -N '' -C pgo-demo -f "$home/id_demo"
fi
if [ ! -d "$home/work.git" ]; then
    mkdir -p "$home/.seed"
    rm -rf "$home/.seed/work"
    cp -r "$top/examples/demo/repo" "$home/.seed/work"
    mkdir -p "$home/.seed/work/ssh"
    cp "$home/id_demo.pub" "$home/.seed/work/ssh/id_demo.pub"
    upstream work "$home/.seed/work"
    rm -rf "$home/.seed"
fi
upstream proxy "$top/examples/demo/proxy"
chmod -R a+rX "$home/work.git" "$home/proxy.git"
chmod 0755 "$home"
# the shared network the proxy reaches the team's web server on (made by the operator)
docker network inspect pgo-demo-proxy >/dev/null 2>&1 || docker network create pgo-demo-proxy >/dev/null

cat > "$home/pgo.toml" <<TOML
[[services]]
name = "demo"
user = "$user"
repository = "$home/work.git"
branch = "main"
env = [ "GREETING=hello" ]
urls = { "http://localhost:8088" = "web:8080" }
networks = [ "pgo-demo-proxy" ]

[[services]]
name = "proxy"
user = "root"
repository = "$home/proxy.git"
branch = "main"
import = "caddy/Caddyfile-import"
reload = "localhost:proxy//exec caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile"
TOML
chmod 600 "$home/pgo.toml"

pgoctl="$top/.venv/bin/pgoctl -i $home/id_demo -p $port"
cat <<MSG

pgo demo: pgod tracks $home/work.git (service demo, user $user) and $home/proxy.git
(service proxy, root: Caddy on 127.0.0.1:8088). In another terminal, try:

  curl http://localhost:8088/                   # the team's page, through the proxy
  $pgoctl localhost:demo//ping
  $pgoctl localhost:demo//ps
  $pgoctl localhost:demo//status
  $pgoctl -- localhost:demo//logs --tail 5 web
  ssh -p $port -i $home/id_demo localhost demo//ps

Change the page, push, and see it served (pgod polls every 30s; ...//git pull skips the wait):

  cd $home/work && sed -i 's/Hello/Hi/' www/index.html && git commit -qam hi && git push -q origin main
  curl http://localhost:8088/

A change of the compose model redeploys (in a second or two: the web server stops at once):

  echo 'x-pgo-version: 2' >> compose.yaml && git commit -qam v2 && git push -q origin main

Stop with Ctrl-C (containers keep running; 'touch $home/dir/demo.stop' downs them).

MSG
exec "$top/.venv/bin/pgod" -c "$home/pgo.toml" -d "$home/dir" --datadir "$home/data" \
    -t 30s -s ":$port" -m "127.0.0.1:9112"
