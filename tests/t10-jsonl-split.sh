#!/bin/sh
# jsonl-split: the lamini split is 1260/140, disjoint, complete, stable; ids
# are added; bad lines are errors naming the line or are skipped and counted.
. "$(dirname "$0")/lib.sh"
data=$TOP/data/lamini_docs.jsonl

jsonl-split --train "$TMP/train" --test "$TMP/test" "$data"
check "train part has 1260 records" "test \$(wc -l <'$TMP/train') -eq 1260"
check "test part has 140 records" "test \$(wc -l <'$TMP/test') -eq 140"
check "--part writes the same parts" \
	"jsonl-split --part test '$data' | cmp - '$TMP/test' && jsonl-split --part train <'$data' | cmp - '$TMP/train'"
check "parts are disjoint and together the input" \
	"cat '$TMP/train' '$TMP/test' | sed 's/^{\"id\":[0-9]*,/{/' | sort >'$TMP/both' && sort '$data' | cmp - '$TMP/both'"
check "ids are the input line numbers" \
	"sed -n 's/^{\"id\":\\([0-9]*\\),.*/\\1/p' '$TMP/test' | while read n; do sed -n \"\${n}p\" '$data' | cut -c1-60 >>'$TMP/orig'; done;
	 sed 's/^{\"id\":[0-9]*,/{/' '$TMP/test' | cut -c1-60 | cmp - '$TMP/orig'"
check "identical on re-run" "jsonl-split --part test '$data' | cmp - '$TMP/test'"
check "another seed gives another split of the same size" \
	"jsonl-split --part test --seed 7 '$data' >'$TMP/t7' && test \$(wc -l <'$TMP/t7') -eq 140 && ! cmp -s '$TMP/t7' '$TMP/test'"
check "--test-count" "test \$(jsonl-split --part test -n 5 '$data' | wc -l) -eq 5"

printf '{"a":1}\n\nnot json\n{"id":"x","b":2}\n[1,2]\n{}\n' >"$TMP/mixed"
check "a bad line is an error naming it" \
	"jsonl-split --part train '$TMP/mixed' 2>'$TMP/err' >/dev/null; test \$? -eq 1 && grep -qx 'jsonl-split: line 3: not a JSON object' '$TMP/err'"
check "--skip-bad skips and counts" \
	"jsonl-split --skip-bad --part train -r 0 '$TMP/mixed' 2>'$TMP/err' >'$TMP/out' && grep -q 'skipped 2 bad lines' '$TMP/err' && test \$(wc -l <'$TMP/out') -eq 3"
check "an existing id is kept, an empty object gets one" \
	"jsonl-split --skip-bad -q --part train -r 0 '$TMP/mixed' | sed -n '2p;3p' | tr '\n' ' ' | grep -qx '{\"id\":\"x\",\"b\":2} {\"id\":6} '"
check "no output option is a usage error" "jsonl-split '$data' >/dev/null 2>&1; test \$? -eq 2"
check "missing file is an error" "jsonl-split --part test /no/such 2>&1 >/dev/null | grep -q 'No such file'"

done_testing
