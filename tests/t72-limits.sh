#!/bin/sh
# Absurd sizes in a header are rejected, with a message, before anything
# that large is allocated: the tools run under a small address-space limit
# (ulimit -v), so an allocation of the claimed size would fail as "out of
# memory" instead. (Not under the sanitizers: their shadow memory needs the
# address space.)
. "$(dirname "$0")/lib.sh"
[ -z "${TUNEPIPE_SANITIZE:-}" ] || skip_all "ulimit -v and the sanitizers' shadow memory do not mix"
R=$TOP/tests/fuzz/regress
tiny=$TOP/tests/data/tiny-neox/tiny-f32
LIMIT_KB=250000

# rejected DESCRIPTION PATTERN COMMAND: exit 1, one line matching PATTERN.
rejected() {
	check "$1" "(ulimit -v $LIMIT_KB; $3) >/dev/null 2>'$TMP/err'; test \$? -eq 1 &&
		test \$(wc -l <'$TMP/err') -eq 1 && grep -q '$2' '$TMP/err' && ! grep -q 'out of memory' '$TMP/err'"
}

# The token stream: the fixtures are zstd frames after a mode byte.
for case in "segment-claims-2pow32-tokens:fields run past" "record-claims-4GiB:claims 4294967295 bytes" \
	"record-claims-255MiB-truncated:truncated record"; do
	f=$R/stream/reject-limit-${case%%:*}.zst
	rejected "a stream whose ${case%%:*}" "${case#*:}" "tail -c +2 '$f' | pad-trunc -q 4"
done

# safetensors: the model loader opens the file before sizing anything.
for case in "header-claims-100GB:exceeds the" "header-claims-2pow64-1:exceeds the" \
	"offset-past-end:outside the file" "offset-2pow64:outside the file" "shape-overflow:shape too large"; do
	name=${case%%:*}
	mkdir "$TMP/$name"
	cp "$tiny/config.json" "$TMP/$name/"
	cp "$R/safetensors/reject-$name" "$TMP/$name/model.safetensors"
	rejected "a model.safetensors whose $name" "${case#*:}" "neox-gen -m '$TMP/$name' -n 1 </dev/null"
done

# A config.json describing a model far larger than its checkpoint: the
# loader notices the mismatch before allocating the parameters.
mkdir "$TMP/bigconfig"
cp "$tiny/model.safetensors" "$TMP/bigconfig/"
sed -e 's/"hidden_size": 64/"hidden_size": 2048/' -e 's/"intermediate_size": 256/"intermediate_size": 8192/' \
	-e 's/"vocab_size": 512/"vocab_size": 50304/' -e 's/"num_hidden_layers": 2/"num_hidden_layers": 16/' \
	"$tiny/config.json" >"$TMP/bigconfig/config.json"
rejected "a config.json far larger than its checkpoint" "has shape \\[512, 64\\], config.json implies \\[50304, 2048\\]" \
	"neox-gen -m '$TMP/bigconfig' -n 1 </dev/null"
done_testing
