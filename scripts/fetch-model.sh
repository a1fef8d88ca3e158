#!/bin/sh
# fetch-model.sh — download a Hugging Face model for tunepipe: config.json,
# model.safetensors (or model.safetensors.index.json and the shards it
# names) and tokenizer.json, with curl, showing each file's size and sha256.
#
#   scripts/fetch-model.sh MODEL_ID [DIR]
#
# MODEL_ID is owner/name, e.g. EleutherAI/pythia-410m; DIR defaults to
# models/NAME. Files come from $HF_ENDPOINT/MODEL_ID/resolve/$REVISION/FILE
# (HF_ENDPOINT defaults to https://huggingface.co, REVISION to main);
# HF_TOKEN, when set, is sent as a bearer token (gated models).
#
# The files download into a temporary directory beside DIR, which becomes
# DIR only when every file is complete: a failed or interrupted fetch
# (SIGINT, SIGTERM, SIGHUP) leaves nothing behind, and DIR is never a
# half-downloaded model. A connection that breaks after some bytes resumes
# from there (up to 5 tries per file). When DIR exists, its files are kept
# and only the missing ones are fetched. When the server states a file's
# sha256 (Hugging Face's X-Linked-Etag for LFS files), the download is
# checked against it.
set -eu

usage() {
	echo "Usage: $0 MODEL_ID [DIR]" >&2
	exit 2
}
case ${1:-} in
-h | --help)
	sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
esac
[ $# -ge 1 ] && [ $# -le 2 ] || usage
model_id=$1
case $model_id in
*/*/* | /* | */ | ./* | ../* | */. | */.. | *[!A-Za-z0-9._/-]*) ;;
*/*) name=${model_id#*/} ;;
esac
[ -n "${name:-}" ] || { echo "fetch-model: '$model_id' is not owner/name" >&2; exit 2; }
dir=${2:-models/$name}
endpoint=${HF_ENDPOINT:-https://huggingface.co}
endpoint=${endpoint%/}
revision=${REVISION:-main}
command -v curl >/dev/null || { echo "fetch-model: curl is not installed" >&2; exit 1; }
[ ! -e "$dir" ] || [ -d "$dir" ] || { echo "fetch-model: $dir exists and is not a directory" >&2; exit 1; }

# Everything this run creates is removed unless it succeeds: the staging
# directory, the directories made above it, and a running curl.
stage=
curl_pid=
parent=$(dirname "$dir")
new_top=
p=$parent
while [ ! -e "$p" ]; do
	new_top=$p
	p=$(dirname "$p")
done
cleanup() {
	if [ -n "$curl_pid" ]; then
		kill "$curl_pid" 2>/dev/null || :
		wait "$curl_pid" 2>/dev/null || :
	fi
	[ -z "$stage" ] || rm -rf "$stage"
	p=$parent
	while [ -n "$new_top" ] && rmdir "$p" 2>/dev/null && [ "$p" != "$new_top" ]; do p=$(dirname "$p"); done
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$parent"
stage=$(mktemp -d "$parent/.$(basename "$dir").fetch.XXXXXX")
chmod "$(umask -S)" "$stage" # it becomes DIR: mkdir's mode, not mktemp's 0700
headers=$stage/.headers

# A progress bar only for a person watching.
if [ -t 2 ]; then progress=--progress-bar; else progress=--silent; fi

human() {
	numfmt --to=iec-i --suffix=B "$1" 2>/dev/null || echo "$1 bytes"
}

# show FILE: its size and sha256.
show() {
	bytes=$(wc -c <"$1")
	sum=$(sha256sum "$1" | cut -d' ' -f1)
	printf '%-34s %10s  sha256 %s\n' "$(basename "$1")" "$(human "$bytes")" "$sum"
}

size() {
	if [ -f "$1" ]; then echo $(($(wc -c <"$1"))); else echo 0; fi
}

# download URL FILE: curl in the background, so that a signal is handled
# at once rather than after the transfer; sets status and code.
download() {
	curl --fail --location --show-error $progress --connect-timeout 30 \
		${HF_TOKEN:+--header "Authorization: Bearer $HF_TOKEN"} \
		--continue-at - --dump-header "$headers" --write-out '%{http_code}' \
		--output "$2" "$1" >"$stage/.code" &
	curl_pid=$!
	set +e
	wait "$curl_pid"
	status=$?
	set -e
	curl_pid=
	code=$(cat "$stage/.code")
}

# get FILE [optional]: downloads FILE into the staging directory unless DIR
# has it. Returns 1 when an optional file is not there (HTTP 404); dies on
# any other failure.
get() {
	file=$1
	if [ -f "$dir/$file" ]; then
		show "$dir/$file"
		return 0
	fi
	dest=$stage/$file
	url=$endpoint/$model_id/resolve/$revision/$file
	tries=0
	restarted=
	while :; do
		tries=$((tries + 1))
		before=$(size "$dest.part")
		download "$url" "$dest.part"
		[ $status -eq 0 ] && break
		# A server that ignores ranges (33) or a .part that is not a prefix
		# of the file (416): start over, once.
		if [ -z "$restarted" ] && { [ $status -eq 33 ] || [ "$code" = 416 ]; }; then
			echo "fetch-model: $file: cannot resume; downloading it again" >&2
			rm -f "$dest.part"
			restarted=1
			continue
		fi
		if [ "$code" = 404 ] && [ "${2:-}" = optional ]; then
			rm -f "$dest.part"
			return 1
		fi
		if [ $tries -lt 5 ] && [ "$(size "$dest.part")" -gt "$before" ]; then
			echo "fetch-model: $file: interrupted after $(size "$dest.part") bytes (curl exit $status); resuming" >&2
			continue
		fi
		echo "fetch-model: $url: download failed (curl exit $status, HTTP ${code:-none})" >&2
		exit 1
	done
	[ -f "$dest.part" ] || : >"$dest.part" # curl writes nothing for an empty file
	expected=$(tr -d '\r' <"$headers" | sed -n 's/^[Xx]-[Ll]inked-[Ee][Tt]ag: *"\{0,1\}\([0-9a-f]\{64\}\)"\{0,1\} *$/\1/p' | head -n 1)
	if [ -n "$expected" ]; then
		actual=$(sha256sum "$dest.part" | cut -d' ' -f1)
		if [ "$actual" != "$expected" ]; then
			echo "fetch-model: $file: sha256 $actual, but the server says $expected; nothing kept, run again" >&2
			exit 1
		fi
	fi
	mv "$dest.part" "$dest"
	show "$dest"
}

# The downloaded copy of FILE, or DIR's.
fetched() {
	if [ -f "$stage/$1" ]; then echo "$stage/$1"; else echo "$dir/$1"; fi
}

echo "fetch-model: $model_id ($revision) from $endpoint into $dir" >&2
get config.json
if ! get model.safetensors optional; then
	if ! get model.safetensors.index.json optional; then
		echo "fetch-model: $model_id has neither model.safetensors nor model.safetensors.index.json" \
			"(tunepipe reads safetensors only)" >&2
		exit 1
	fi
	shards=$(grep -o '"[^"/]*\.safetensors"' "$(fetched model.safetensors.index.json)" | tr -d '"' | sort -u)
	[ -n "$shards" ] || { echo "fetch-model: model.safetensors.index.json names no shards" >&2; exit 1; }
	for shard in $shards; do get "$shard"; done
fi
get tokenizer.json

rm -f "$headers" "$stage/.code"
if [ -d "$dir" ]; then
	for f in "$stage"/*; do
		[ ! -e "$f" ] || mv "$f" "$dir/"
	done
	rmdir "$stage"
else
	mv "$stage" "$dir"
fi
stage=
new_top=
