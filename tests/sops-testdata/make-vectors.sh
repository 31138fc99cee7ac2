#!/bin/sh
# Regenerate vectors/ with the oracle (see oracle/README.md): each vectors/NAME.in is
# encrypted as sops 3.13.2 encrypts it, for a fresh data key that the `age` command wraps for
# a test key, into vectors/NAME; vectors/NAME.out is what `sops decrypt vectors/NAME` prints.
# Needs Debian's golang-go, golang-gopkg-yaml.v3-dev, golang-gopkg-ini.v1-dev and age.
set -eu
[ -n "${VERBOSE:-}" ] && set -x
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cp -r oracle/src/sopsoracle "$work/src/"
# Debian's go-ini is 1.66.2; sops links 1.67: take its writer's one change (no blank line
# after the last section), upstream commit 842b9a9
mkdir -p "$work/src/gopkg.in"
cp -r /usr/share/gocode/src/gopkg.in/ini.v1 "$work/src/gopkg.in/"
(cd "$work/src/gopkg.in/ini.v1" && patch -s -p1) < oracle/go-ini-v1.67-write.patch
GO111MODULE=off GOPATH="$work:/usr/share/gocode" GOCACHE="$work/cache" \
    go build -o "$work/oracle" sopsoracle/cmd

recipient() { sed -n 's/^# public key: //p' "keys/$1.txt"; }

# vector NAME FORMAT KEY [oracle flags...]
vector() {
    name=$1 format=$2 key=$3
    shift 3
    in=vectors/$name.in
    
    head -c 32 /dev/urandom > "$work/key"
    age -a -r "$(recipient "$key")" -o "$work/wrapped" "$work/key"
    "$work/oracle" -format "$format" -in "$in" -recipient "$(recipient "$key")" \
        -wrapped "$work/wrapped" -key "$(od -An -tx1 -v "$work/key" | tr -d ' \n')" \
        -lastmodified 2026-11-26T12:00:00Z -out-enc "vectors/$name" -out-dec "vectors/$name.out" "$@"
}

vector nested.yaml yaml key1
vector comments.yaml yaml key1
vector multidoc.yaml yaml key1
vector aliases.yaml yaml key1
vector regex.yaml yaml key1 -encrypted-regex '^(data|stringData)$'
vector maconly.yaml yaml key1 -encrypted-regex '^(data|stringData)$' -mac-only-encrypted
vector suffix.yaml yaml key1 -encrypted-suffix password
vector nested.json json key1
vector app.env dotenv key1
vector app.ini ini key1
vector binary.txt binary key1
vector rotated-old.env dotenv key1
vector rotated-new.env dotenv key2
vector tricky.yaml yaml key1
