#!/bin/sh
# pad-trunc and strip-prompt: truncation and padding land in the stream as
# metadata (checked on the decompressed bytes, see neox-stream(5)), content
# survives, padding is never inferred from token values.
. "$(dirname "$0")/lib.sh"

# bytes FILE: the decompressed stream as one line of decimal bytes.
bytes() { zstd -dcq "$1" | od -An -v -tu1 | tr -s ' \n' ' '; }
# seg NAME PADSIDE TRUNCSIDE N PAD TRUNC IDS...: a segment's bytes (ids < 256).
seg() {
	name=$1; shift
	printf ' %d' ${#name}; printf '%s' "$name" | od -An -v -tu1 | tr -s ' \n' ' ' | sed 's/^ */ /; s/ $//'
	printf ' %d %d' "$1" "$2"; shift 2
	for v in "$@"; do printf ' %d 0 0 0' "$v"; done
	echo ' '
}

printf '{"question":[5,6,7,8,9],"answer":[10,11,12]}\n{"question":[0,2],"answer":[0]}\n' >"$TMP/ids.jsonl"
bpe-encode --no-eos <"$TMP/ids.jsonl" >"$TMP/in.tok"
pad-trunc -q 4 -a 6 <"$TMP/in.tok" >"$TMP/pt.tok"
check "question cut on the left to 4: trunc 1 left, no padding" \
	"bytes '$TMP/pt.tok' | grep -q '$(seg question 0 1 4 0 1 6 7 8 9)'"
check "answer padded on the right to 6 with id 1: pad 3 right" \
	"bytes '$TMP/pt.tok' | grep -q '$(seg answer 2 0 6 3 0 10 11 12 1 1 1)'"
check "short question padded on the left; id-0 tokens stay content" \
	"bytes '$TMP/pt.tok' | grep -q '$(seg question 1 0 4 2 0 1 1 0 2)' && bytes '$TMP/pt.tok' | grep -q '$(seg answer 2 0 6 5 0 0 1 1 1 1 1)'"
check "decode drops padding by count, keeps real id 0" \
	"bpe-encode -d --ids <'$TMP/pt.tok' | tr -d ' ' | grep -qx '{\"id\":2,\"question\":\\[0,2\\],\"answer\":\\[0\\]}'"
check "--pad-id 0: padding with the EOS id is still told apart" \
	"pad-trunc -a 3 --pad-id 0 <'$TMP/in.tok' | bpe-encode -d --ids | tr -d ' ' | sed -n 2p | grep -qx '{\"id\":2,\"question\":\\[0,2\\],\"answer\":\\[0\\]}'"
check "applying again re-pads from the content, truncations add up" \
	"pad-trunc -q 3 <'$TMP/pt.tok' >'$TMP/pt2.tok' && bytes '$TMP/pt2.tok' | grep -q '$(seg question 0 1 3 0 2 7 8 9)'"
check "--no-pad only truncates" \
	"pad-trunc --no-pad -q 4 -a 6 <'$TMP/in.tok' | bpe-encode -d --ids | tr -d ' ' | head -1 | grep -qx '{\"id\":1,\"question\":\\[6,7,8,9\\],\"answer\":\\[10,11,12\\]}'"
check "--cut-question right keeps the start" \
	"pad-trunc --cut-question right -q 2 <'$TMP/in.tok' | bpe-encode -d --ids | tr -d ' ' | head -1 | grep -q '\"question\":\\[5,6\\]'"
check "a limit alone leaves the other segment" \
	"pad-trunc -a 1 <'$TMP/in.tok' | bpe-encode -d --ids | tr -d ' ' | head -1 | grep -qx '{\"id\":1,\"question\":\\[5,6,7,8,9\\],\"answer\":\\[10\\]}'"
check "no limit is a usage error" "pad-trunc <'$TMP/in.tok' >/dev/null 2>&1; test \$? -eq 2"
check "concatenated streams pass through" \
	"cat '$TMP/in.tok' '$TMP/in.tok' | pad-trunc -q 9 | bpe-encode -d --ids | wc -l | grep -qx 4"

# strip-prompt needs generated segments: the "generated" field of
# pre-tokenized JSONL gives one (--fields question,generated).
printf '{"question":[5,6],"generated":[7,8,0,9,9]}\n{"question":[5],"generated":[1,2,3,1,2,3,1,2]}\n{"question":[4],"answer":[3]}\n' >"$TMP/gen.jsonl"
bpe-encode --no-eos --fields question,generated <"$TMP/gen.jsonl" >"$TMP/gen.tok" 2>"$TMP/err" || true
if bpe-encode -d --ids <"$TMP/gen.tok" 2>/dev/null | grep -q generated; then
	check "strip-prompt drops the prompt and cuts after the first EOS" \
		"strip-prompt <'$TMP/gen.tok' | bpe-encode -d --ids | tr -d ' ' | head -1 | grep -qx '{\"id\":1,\"generated\":\\[7,8,0\\],\"stop\":\"eos\"}'"
	check "cut tokens are counted as truncation" \
		"strip-prompt <'$TMP/gen.tok' >'$TMP/s.tok' && bytes '$TMP/s.tok' | grep -q '$(seg generated 0 2 3 0 2 7 8 0)'"
	check "--drop-eos drops the EOS too" \
		"strip-prompt --drop-eos <'$TMP/gen.tok' | bpe-encode -d --ids | tr -d ' ' | head -1 | grep -q '\"generated\":\\[7,8\\]'"
	check "--cut-repeats 3 cuts where a 3-gram comes again" \
		"strip-prompt -r 3 <'$TMP/gen.tok' | bpe-encode -d --ids | tr -d ' ' | sed -n 2p | grep -q '\"generated\":\\[1,2,3\\]'"
	check "-k keeps the prompt; records without a generation pass unchanged" \
		"strip-prompt -k <'$TMP/gen.tok' | bpe-encode -d --ids | tr -d ' ' | sed -n '1p;3p' | tr '\n' ' ' | grep -qx '{\"id\":1,\"question\":\\[5,6\\],\"generated\":\\[7,8,0\\],\"stop\":\"eos\"} {\"id\":3,\"question\":\\[4\\],\"answer\":\\[3\\]} '"
	check "decoding tells an EOS stop from a length stop" \
		"strip-prompt <'$TMP/gen.tok' | bpe-encode -d --skip-special | head -2 | sed 's/.*\"stop\"://' | tr '\n' ' ' | grep -qx '\"eos\"} \"length\"} '"
else
	ok "strip-prompt tests need bpe-encode --fields question,generated" false
fi

done_testing
