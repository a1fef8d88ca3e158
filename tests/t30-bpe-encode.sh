#!/bin/sh
# bpe-encode: the lamini set encodes to Hugging Face's ids (tokenizers 0.23.2,
# tests/data/lamini_docs.ref.jsonl) with EOS after each answer; --text,
# --template, --no-eos, --fields, pre-tokenized arrays, -d and -d --ids; bad
# lines are errors naming the line or are skipped and counted.
. "$(dirname "$0")/lib.sh"
data=$TOP/data/lamini_docs.jsonl
ref=$TOP/tests/data/lamini_docs.ref.jsonl

# The reference has every question, then its answer: pair them up as
# `bpe-encode -d --ids` writes a record, EOS (0) ending the answer.
sed 's/.*"ids":\(\[[^]]*\]\).*/\1/' "$ref" |
	awk 'NR % 2 == 1 { q = $0; next }
	     { a = $0; sub(/\]$/, (a == "[]" ? "0]" : ",0]"), a); printf "{\"id\":%d,\"question\":%s,\"answer\":%s}\n", NR / 2, q, a }' \
	>"$TMP/expected"
bpe-encode <"$data" >"$TMP/lamini.tok"
test_expect_success "all 1,400 lamini records: Hugging Face's ids, EOS after the answer" '
	bpe-encode -d --ids <"$TMP/lamini.tok" >"$TMP/actual" &&
	test_cmp "$TMP/expected" "$TMP/actual"
'
test_expect_success 'decoding and encoding again gives the same ids' '
	bpe-encode -d --skip-special <"$TMP/lamini.tok" | bpe-encode | bpe-encode -d --ids >"$TMP/again" &&
	test_cmp "$TMP/expected" "$TMP/again"
'
check "-d keeps <|endoftext|> in the text, --skip-special drops it" \
	"bpe-encode -d <'$TMP/lamini.tok' | head -1 | grep -q 'performance.<|endoftext|>\"}\$' &&
	 bpe-encode -d --skip-special <'$TMP/lamini.tok' | head -1 | grep -q 'performance.\"}\$'"

# Ids below are Hugging Face's for the same texts.
q1='[4118,19782,27,187,2347,476,309,7472,253,3045,285,3290,273,253,4561,2505,432,418,4988,74,3210,32,187,187,4118,37741,27]'
check "--template wraps the question (lamini's processed format)" \
	"head -1 '$data' | bpe-encode --template '### Question:\n{question}\n\n### Answer:' | bpe-encode -d --ids |
	 grep -qF '{\"id\":1,\"question\":$q1,\"answer\":[2512,'"
check "-d --template writes the question without the template" \
	"head -1 '$data' | bpe-encode --template '### Question:\n{question}\n\n### Answer:' |
	 bpe-encode -d --template '### Question:\n{question}\n\n### Answer:' |
	 grep -qF '{\"id\":1,\"question\":\"How can I evaluate the performance and quality of the generated text from Lamini models?\",\"answer\":' &&
	 head -1 '$data' | bpe-encode | bpe-encode -d --template 'Q: {question}!' | grep -qF '\"question\":\"How can I'"
check "--no-eos leaves the answer without EOS" \
	"head -1 '$data' | bpe-encode --no-eos | bpe-encode -d --ids | grep -q ',15\\]}\$'"
cafe=$(printf 'caf\303\251')
printf 'Hello world\n%s\n\nx<|endoftext|>y\n' "$cafe" >"$TMP/lines"
check "--text: a record per line, blank ones too, question only" \
	"bpe-encode --text <'$TMP/lines' | bpe-encode -d --ids | tr '\n' ' ' | grep -qx '{\"id\":1,\"question\":\\[12092,1533\\]} {\"id\":2,\"question\":\\[68,2320,860\\]} {\"id\":3,\"question\":\\[\\]} {\"id\":4,\"question\":\\[89,0,90\\]} '"
check "--special-as-text encodes <|endoftext|> as text" \
	"printf 'x<|endoftext|>y\n' | bpe-encode --text --special-as-text | bpe-encode -d --ids | grep -qx '{\"id\":1,\"question\":\\[89,29,93,423,1171,1156,49651,90\\]}'"
check "--text round trip through -d" \
	"bpe-encode --text <'$TMP/lines' | bpe-encode -d | sed -n 2p | grep -qx '{\"id\":2,\"question\":\"$cafe\"}'"

printf '{"instruction":"Hello world","response":[5,6]}\n' >"$TMP/fields.jsonl"
check "--fields instruction,response; an array of ids passes through" \
	"bpe-encode --fields instruction,response <'$TMP/fields.jsonl' | bpe-encode -d --ids | grep -qx '{\"id\":1,\"question\":\\[12092,1533\\],\"answer\":\\[5,6,0\\]}'"
check "the template goes around pre-tokenized ids" \
	"printf '{\"question\":[7],\"answer\":\"x\"}\n' | bpe-encode --template 'Q: {question}!' | bpe-encode -d --ids | grep -q '\"question\":\\[50,27,209,7,2\\]'"
check "a member named generated gives a generated segment" \
	"printf '{\"question\":\"a\",\"answer\":\"b\",\"generated\":[9]}\n' | bpe-encode | bpe-encode -d --ids | grep -qx '{\"id\":1,\"question\":\\[66\\],\"answer\":\\[67,0\\],\"generated\":\\[9\\],\"stop\":\"length\"}'"
check "an integer id member is the record id; blank lines count" \
	"printf '{\"id\":41,\"question\":\"a\",\"answer\":\"b\"}\n\n{\"question\":\"a\",\"answer\":\"b\"}\n' | bpe-encode | bpe-encode -d --ids | cut -c1-8 | tr '\n' ' ' | grep -qx '{\"id\":41 {\"id\":3, '"
check "a \\\\u0000 escape is a character, not the end of the text" \
	"printf '{\"question\":\"a\\\\u0000b\",\"answer\":\"\"}\n' | bpe-encode | bpe-encode -d --ids | grep -q '\"question\":\\[66,177,67\\]'"

check "a \\\\u escape without four hex digits is an error (cJSON would read U+0000)" \
	"printf '{\"question\":\"a\\\\u00x0b\",\"answer\":\"\"}\n' | bpe-encode 2>&1 >/dev/null | grep -qx 'bpe-encode: line 1: a .u escape without four hex digits'"

# As cJSON reads JSON, the \u0000 recovery does too: a byte-order mark at the
# start of a line and any control character between tokens are skipped.
printf '\357\273\277{"question":"a","answer":""}\n\357\273\277{"question":"a\\u0000b","answer":""}\n\v{"question":"a\\u0000b","answer":""}\n' >"$TMP/bom.jsonl"
check "a byte-order mark or a control character around the JSON is skipped, \\\\u0000 or not" \
	"bpe-encode --no-eos <'$TMP/bom.jsonl' | bpe-encode -d --ids | tr '\n' ' ' | grep -qx '{\"id\":1,\"question\":\\[66\\],\"answer\":\\[\\]} {\"id\":2,\"question\":\\[66,177,67\\],\"answer\":\\[\\]} {\"id\":3,\"question\":\\[66,177,67\\],\"answer\":\\[\\]} '"
printf '{"id":1,"question":"x","answer":"y","question":"a","id":7,"answer":"b"}\n{"question":"x","question":"a\\u0000b","answer":""}\n' >"$TMP/dup.jsonl"
check "of members with the same name the last counts, as in Python's json" \
	"bpe-encode <'$TMP/dup.jsonl' | bpe-encode -d --ids | tr '\n' ' ' | grep -qx '{\"id\":7,\"question\":\\[66\\],\"answer\":\\[67,0\\]} {\"id\":2,\"question\":\\[66,177,67\\],\"answer\":\\[0\\]} '"

printf '{"question":"a","answer":"b"}\nnot json\n{"question":"a"}\n{"question":"\377","answer":"b"}\n{"question":"a","answer":[1,"x"]}\n{"question":"c","answer":"d"}\n' >"$TMP/bad.jsonl"
check "a line that is not JSON is an error naming it" \
	"bpe-encode <'$TMP/bad.jsonl' 2>'$TMP/err' >/dev/null; test \$? -eq 1 && grep -qx 'bpe-encode: line 2: not a JSON object' '$TMP/err'"
check "a missing member is an error naming the line" \
	"sed -n 3p '$TMP/bad.jsonl' | bpe-encode 2>&1 >/dev/null | grep -qx 'bpe-encode: line 1: no \"answer\" member'"
check "invalid UTF-8 in a string is an error naming the line" \
	"sed -n 4p '$TMP/bad.jsonl' | bpe-encode 2>&1 >/dev/null | grep -qx 'bpe-encode: line 1: \"question\" is not valid UTF-8 (byte 1)'"
check "--text: invalid UTF-8 is an error naming the line" \
	"printf 'ok\\nab\\377c\\n' | bpe-encode --text 2>&1 >/dev/null | grep -qx 'bpe-encode: line 2: not valid UTF-8 (byte 3)'"
check "an array that is not token ids is an error" \
	"sed -n 5p '$TMP/bad.jsonl' | bpe-encode 2>&1 >/dev/null | grep -q '^bpe-encode: line 1: \"answer\": not an array of token ids'"
check "--skip-bad skips and counts, keeps the good lines" \
	"bpe-encode --skip-bad <'$TMP/bad.jsonl' 2>'$TMP/err' | bpe-encode -d | cut -c1-8 | tr '\n' ' ' | grep -qx '{\"id\":1, {\"id\":6, ' &&
	 grep -qx 'bpe-encode: skipped 4 bad lines' '$TMP/err'"
check "-d warns about ids that are no token" \
	"printf '{\"question\":[50300],\"answer\":[1]}\n' | bpe-encode --no-eos | bpe-encode -d 2>&1 >/dev/null | grep -q '1 token id beyond'"

mkdir "$TMP/model"
sed 's/"type": "NFC"/"type": "NFKC"/' "$TOP/data/tokenizer.json" >"$TMP/model/tokenizer.json"
check "-m DIR uses DIR/tokenizer.json; an unsupported one is refused" \
	"bpe-encode -m '$TMP/model' <'$TMP/lines' 2>&1 >/dev/null | grep -q 'normalizer NFKC is not supported'"
sed 's/"!": 2,/"": 2,/' "$TOP/data/tokenizer.json" >"$TMP/empty-key.json"
check "a tokenizer.json with an empty token is refused with its path" \
	"bpe-encode -t '$TMP/empty-key.json' <'$TMP/lines' 2>'$TMP/err' >/dev/null; test \$? -eq 1 &&
	 grep -qx 'bpe-encode: $TMP/empty-key.json: model.vocab: an empty token' '$TMP/err'"
check "-t FILE" "bpe-encode -t '$TOP/data/tokenizer.json' --text <'$TMP/lines' | bpe-encode -d | wc -l | grep -qx 4"
check "a missing tokenizer is an error" "bpe-encode -t /no/such.json <'$TMP/lines' 2>&1 >/dev/null | grep -q 'No such file'"
check "-f writes the stream even to a terminal" \
	"command -v script >/dev/null || exit 0; script -qec '$BIN/bpe-encode -f --text </dev/null' /dev/null | grep -q NEOXTOKS"
check "--ids without -d is a usage error" "bpe-encode --ids </dev/null >/dev/null 2>&1; test \$? -eq 2"
check "-d with an encoding option is a usage error" "bpe-encode -d --no-eos </dev/null >/dev/null 2>&1; test \$? -eq 2"
check "-d --ids --template is a usage error" "bpe-encode -d --ids --template 'Q: {question}' </dev/null >/dev/null 2>&1; test \$? -eq 2"

done_testing
