#!/bin/sh
# fetch-model.sh — download a Hugging Face model for tunepipe: config.json,
# model.safetensors (or model.safetensors.index.json and the shards it
# names) and tokenizer.json, with curl, resumably, showing each file's size
# and sha256.
#
#   scripts/fetch-model.sh MODEL_ID [DIR]
#
# MODEL_ID is owner/name, e.g. EleutherAI/pythia-410m; DIR defaults to
# models/NAME. Files come from $HF_ENDPOINT/MODEL_ID/resolve/$REVISION/FILE
# (HF_ENDPOINT defaults to https://huggingface.co, REVISION to main);
# HF_TOKEN, when set, is sent as a bearer token (gated models).
#
# A file downloads to FILE.part and is renamed when complete, so running the
# command again resumes an interrupted download and skips finished files.
# When the server states the file's sha256 (Hugging Face's X-Linked-Etag for
# LFS files), the download is checked against it.
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
mkdir -p "$dir"
headers=$(mktemp)
trap 'rm -f "$headers"' EXIT

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

# get FILE [optional]: downloads FILE into $dir. Returns 1 when an optional
# file is not there (HTTP 404); dies on any other failure.
get() {
	file=$1
	dest=$dir/$file
	if [ -f "$dest" ]; then
		show "$dest"
		return 0
	fi
	url=$endpoint/$model_id/resolve/$revision/$file
	for attempt in resume fresh; do
		set +e
		code=$(curl --fail --location --show-error $progress --connect-timeout 30 \
			${HF_TOKEN:+--header "Authorization: Bearer $HF_TOKEN"} \
			--continue-at - --dump-header "$headers" --write-out '%{http_code}' \
			--output "$dest.part" "$url")
		status=$?
		set -e
		[ $status -eq 0 ] && break
		# A server that ignores ranges (33) or a .part that is not a prefix
		# of the file any more (416): start over, once.
		if [ $attempt = resume ] && { [ $status -eq 33 ] || [ "$code" = 416 ]; }; then
			echo "fetch-model: $file: cannot resume; downloading it again" >&2
			rm -f "$dest.part"
			continue
		fi
		if [ "$code" = 404 ] && [ "${2:-}" = optional ]; then
			rm -f "$dest.part"
			return 1
		fi
		echo "fetch-model: $url: download failed (curl exit $status, HTTP ${code:-none})" >&2
		exit 1
	done
	[ -f "$dest.part" ] || : >"$dest.part" # curl writes nothing for an empty file
	expected=$(tr -d '\r' <"$headers" | sed -n 's/^[Xx]-[Ll]inked-[Ee][Tt]ag: *"\{0,1\}\([0-9a-f]\{64\}\)"\{0,1\} *$/\1/p' | head -n 1)
	if [ -n "$expected" ]; then
		actual=$(sha256sum "$dest.part" | cut -d' ' -f1)
		if [ "$actual" != "$expected" ]; then
			rm -f "$dest.part"
			echo "fetch-model: $file: sha256 $actual, but the server says $expected; removed it, run again" >&2
			exit 1
		fi
	fi
	mv "$dest.part" "$dest" || exit 1
	show "$dest"
}

echo "fetch-model: $model_id ($revision) from $endpoint into $dir" >&2
get config.json
if ! get model.safetensors optional; then
	if ! get model.safetensors.index.json optional; then
		echo "fetch-model: $model_id has neither model.safetensors nor model.safetensors.index.json" \
			"(tunepipe reads safetensors only)" >&2
		exit 1
	fi
	shards=$(grep -o '"[^"/]*\.safetensors"' "$dir/model.safetensors.index.json" | tr -d '"' | sort -u)
	[ -n "$shards" ] || { echo "fetch-model: model.safetensors.index.json names no shards" >&2; exit 1; }
	for shard in $shards; do get "$shard"; done
fi
get tokenizer.json
