#!/bin/sh
# eval-compare: metrics on a hand-computed fixture, joining and its
# problems, bad input, usage errors, JSON and the HTML report.
. "$(dirname "$0")/lib.sh"
D=$TOP/tests/data/eval
B=$D/base.jsonl
F=$D/ft.jsonl

ok "--help exits 0" sh -c 'eval-compare --help | grep -q "^Usage: eval-compare"'
ok "--version exits 0" sh -c 'eval-compare --version | grep -q "^eval-compare (tunepipe)"'

# Worked by hand (words: lowercased runs of letters and digits):
#   base: id1 "no no no" (loops, shares nothing), id2 shares "the" with the
#   8-word refusal (F1 = 2/15), id3 exact after trimming. F1 = ROUGE-L =
#   (0 + 2/15 + 1)/3 = 37.8%. BLEU: p = 5/14, 3/11, 2/8, 1/5, c = 14, r = 17:
#   exp(1 - 17/14) (5/14 3/11 2/8 1/5)^(1/4) = 21.3%. ppl exp(20/10) = 7.39.
#   finetuned: id1 exact, id2 the refusal with a straight apostrophe (not
#   exact, F1 1), id3 "yes it does" vs "yes it runs offline" (c = 2,
#   F1 = LCS F1 = 4/7): (2 + 4/7)/3 = 85.7%. BLEU: p = 15/16, 12/13, 9/10,
#   7/7, c = 16, r = 17: 88.3%. EOS 2 of 3. ppl exp(10/10) = 2.72.
cat >"$TMP/expected" <<'EOF'
metric                      base  finetuned
records                        3          3
exact match %               33.3       33.3
token F1 %                  37.8       85.7
ROUGE-L F1 %                37.8       85.7
BLEU-4 %                    21.3       88.3
mean length (words)          4.7        5.3
median length (words)        4.0        5.0
repetition %                33.3        0.0
EOS stop %                   0.0       66.7
off-topic refused % (of 1)   0.0      100.0
false refusals % (of 2)      0.0        0.0
perplexity                  7.39       2.72
reference answers: mean 5.7 words, median 5.0; 1 of 3 are refusals
EOF
test_expect_success 'table of hand-computed metrics' '
	eval-compare -s $D/base.score.jsonl $B --score $D/ft.score.jsonl --label finetuned $F >$TMP/table 2>$TMP/err &&
	test_cmp $TMP/expected $TMP/table && test_cmp /dev/null $TMP/err
'

check "--json: fractions, counts, null where undefined" \
	"eval-compare --json $B -s $D/ft.score.jsonl -l ft $F >$TMP/json &&
	 grep -Eq '\"records\":[[:space:]]+3,' $TMP/json &&
	 grep -Eq '\"token_f1\":[[:space:]]+0\.857142857' $TMP/json &&
	 grep -Eq '\"bleu4\":[[:space:]]+0\.882509755' $TMP/json &&
	 grep -Eq '\"perplexity\":[[:space:]]+null' $TMP/json &&
	 grep -Eq '\"perplexity\":[[:space:]]+2\.718281828' $TMP/json &&
	 grep -Eq '\"offtopic_refused\":[[:space:]]+1,' $TMP/json"

printf '%s\n' '{"id":1,"question":"q","answer":"a b","generated":"a b"}' >"$TMP/nostop.jsonl"
check "EOS stop rate is unknown without stop fields" \
	"eval-compare $TMP/nostop.jsonl | grep -Eq '^EOS stop % +-\$' &&
	 eval-compare --json $TMP/nostop.jsonl | grep -Eq '\"eos_stop_rate\":[[:space:]]+null'"

# joining: a missing id, a differing question, a missing score
head -n 2 $F >"$TMP/short.jsonl"
check "a missing id is reported and fails" \
	"eval-compare $B $TMP/short.jsonl >$TMP/out 2>$TMP/err; test \$? -eq 1 &&
	 grep -q 'short.jsonl: 1 of the 3 ids in the inputs is missing (id 2)' $TMP/err &&
	 grep -q 'allow-missing' $TMP/err && ! test -s $TMP/out"
check "--allow-missing compares the complete records, still reporting" \
	"eval-compare --allow-missing $B $TMP/short.jsonl >$TMP/out 2>$TMP/err &&
	 grep -Eq '^records +2 +2\$' $TMP/out && grep -q 'missing (id 2)' $TMP/err &&
	 grep -q 'comparing the 2 records' $TMP/err"
sed 's/Does it run offline?/Does it run online?/' $F >"$TMP/differ.jsonl"
check "a record with another question is reported and fails" \
	"eval-compare $B $TMP/differ.jsonl >/dev/null 2>$TMP/err; test \$? -eq 1 &&
	 grep -q 'differ.jsonl: 1 record whose question or answer differs .* (id 3)' $TMP/err"
head -n 2 $D/base.score.jsonl >"$TMP/short.score.jsonl"
check "a record without a score is reported and fails" \
	"eval-compare -s $TMP/short.score.jsonl $B >/dev/null 2>$TMP/err; test \$? -eq 1 &&
	 grep -q 'short.score.jsonl: 1 record of .*base.jsonl without a score (id 3)' $TMP/err"
{ cat $D/base.score.jsonl; echo '{"id":9,"tokens":1,"nll":1}'; } >"$TMP/extra.score.jsonl"
check "a score for an unknown id is reported and fails" \
	"eval-compare -s $TMP/extra.score.jsonl $B >/dev/null 2>$TMP/err; test \$? -eq 1 &&
	 grep -q 'extra.score.jsonl: 1 score for ids not in .*base.jsonl (id 9)' $TMP/err"
check "--allow-missing takes perplexity over the scored records" \
	"eval-compare --allow-missing -s $TMP/short.score.jsonl $B 2>/dev/null | grep -Eq '^perplexity +7\.39\$'"

# bad input: one line naming file and line, exit 1
bad() { # NAME CONTENT EXPECTED-MESSAGE
	printf '%s\n' "$2" >"$TMP/bad.jsonl"
	check "bad input: $1" \
		"eval-compare $TMP/bad.jsonl >/dev/null 2>$TMP/err; test \$? -eq 1 &&
		 grep -q '^eval-compare: $TMP/bad.jsonl: line [0-9]*: $3' $TMP/err && test \$(wc -l <$TMP/err) -eq 1"
}
bad "not JSON" '{"id":1,' 'not valid JSON'
bad "not an object" '[1,2]' 'not a JSON object'
bad "no generated" '{"id":1,"question":"q","answer":"a"}' 'no "generated"'
bad "answer not a string" '{"id":1,"question":"q","answer":3,"generated":"g"}' '"answer" is not a string'
bad "negative id" '{"id":-1,"question":"q","answer":"a","generated":"g"}' '"id" is not a non-negative integer'
bad "bad stop" '{"id":1,"question":"q","answer":"a","generated":"g","stop":"eof"}' '"stop" is neither'
bad "duplicate id" "$(head -n 1 $B; head -n 1 $B)" 'id 1 already appeared on line 1'
printf '%s\n' '{"id":1,"tokens":4,"nll":0.5,"ppl":1.6487}' >"$TMP/mean.score.jsonl"
check "a ppl that says nll is a mean is rejected" \
	"eval-compare -s $TMP/mean.score.jsonl $B >/dev/null 2>$TMP/err; test \$? -eq 1 &&
	 grep -q 'line 1: \"ppl\" is not exp(nll / tokens)' $TMP/err"
check "a missing file names it" \
	"eval-compare $TMP/nonexistent.jsonl 2>$TMP/err; test \$? -eq 1 && grep -q nonexistent.jsonl $TMP/err"

# usage errors exit 2
check "no file is a usage error" "eval-compare 2>/dev/null; test \$? -eq 2"
check "--label after the last file is a usage error" "eval-compare $B -l x 2>/dev/null; test \$? -eq 2"
check "two labels for one file is a usage error" "eval-compare -l a -l b $B 2>/dev/null; test \$? -eq 2"
check "the same label twice is a usage error" "eval-compare $B $B 2>/dev/null; test \$? -eq 2"
check "--log without --html is a usage error" "eval-compare --log $D/log.jsonl $B 2>/dev/null; test \$? -eq 2"

# HTML report
check "--html writes the report" \
	"eval-compare -s $D/base.score.jsonl $B -l finetuned -s $D/ft.score.jsonl $F \
	   --html $TMP/report.html --log $D/log.jsonl --examples 2 --title 'Demo <1>' >/dev/null &&
	 grep -q '<title>Demo &lt;1&gt;</title>' $TMP/report.html &&
	 grep -q '<th scope=\"row\">ROUGE-L F1 %</th><td>37.8</td><td class=\"best\">85.7</td>' $TMP/report.html &&
	 grep -q '<svg' $TMP/report.html && test \$(grep -c '<polyline' $TMP/report.html) -eq 2 &&
	 test \$(grep -o '<circle' $TMP/report.html | wc -l) -eq 2 &&
	 test \$(grep -c 'class=\"example\"' $TMP/report.html) -eq 2 &&
	 grep -q 'Tell me a &lt;b&gt;joke&lt;/b&gt;' $TMP/report.html && ! grep -q '<b>joke' $TMP/report.html"
check "the report loads nothing from elsewhere" \
	"! grep -Eiq '(src|href)=\"(https?:)?//|@import|url\\(' $TMP/report.html"
check "--note: a paragraph each under the title, escaped, in order" \
	"eval-compare $B --html $TMP/note.html --note 'Random <weights>' --note second >/dev/null &&
	 sed -n '/<\\/h1>/,/records compared/p' $TMP/note.html | grep -c '<p class=\"lead\">' | grep -qx 2 &&
	 grep -A1 -F '<p class=\"lead\">Random &lt;weights&gt;</p>' $TMP/note.html | grep -qF '<p class=\"lead\">second</p>'"
check "--note without --html is a usage error" "eval-compare --note x $B 2>/dev/null; test \$? -eq 2"
check "the report without --log says so" \
	"eval-compare $B --html $TMP/nolog.html >/dev/null && grep -q 'No training log' $TMP/nolog.html &&
	 ! grep -q '<svg' $TMP/nolog.html"
printf '%s\n' '{"loss":1}' >"$TMP/badlog.jsonl"
check "a log line without step is rejected" \
	"eval-compare $B --html $TMP/x.html --log $TMP/badlog.jsonl 2>$TMP/err; test \$? -eq 1 &&
	 grep -q 'badlog.jsonl: line 1: no \"step\"' $TMP/err"

done_testing
