#!/bin/sh
# Initialises the demo repositories volume of docker-compose.yml on first start: when DIR (default
# /data/repos) holds no repository yet, creates DIR/demo, a git-annex repository with uuid
# $DEMO_UUID holding one annexed file (hello.txt), and DIR/demo.bundle, a git bundle of it that
# clients clone from (see README.md, "Deploying"). Does nothing when DIR/demo already exists.
set -eu
dir=${1:-/data/repos}
uuid=${DEMO_UUID:-2c3b4d5e-6f70-4182-93a4-b5c6d7e8f901}
repo="$dir/demo"

if [ -e "$repo" ]; then
  echo "init-demo: $repo exists, leaving it as it is"
  exit 0
fi
: "${GIT_AUTHOR_NAME:=annex-p2phttp}" "${GIT_AUTHOR_EMAIL:=annex-p2phttp@localhost}"
: "${GIT_COMMITTER_NAME:=$GIT_AUTHOR_NAME}" "${GIT_COMMITTER_EMAIL:=$GIT_AUTHOR_EMAIL}"
export GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL

# Built beside the final name and renamed at the end, so an interrupted run leaves no half repository.
work="$dir/.demo.init.$$"
rm -rf "$work"
mkdir -p "$work"
git -C "$work" init -q -b main
git -C "$work" config annex.uuid "$uuid"
(cd "$work" && git annex init -q demo)
echo "Hello from annex-p2phttp. This file was fetched over annex+http://." >"$work/hello.txt"
(cd "$work" && git annex add -q hello.txt && git commit -q -m 'demo: hello.txt')
mv "$work" "$repo"
git -C "$repo" bundle create -q "$dir/demo.bundle.tmp" --all
mv "$dir/demo.bundle.tmp" "$dir/demo.bundle"
echo "init-demo: created $repo (uuid $uuid) with hello.txt, and $dir/demo.bundle"
