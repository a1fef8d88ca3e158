#!/bin/sh
# make fetch-model / scripts/fetch-model.sh against a local HTTP server on
# loopback that mimics Hugging Face's resolve URLs: safetensors files
# redirect to a "CDN" path and carry X-Linked-Etag (their sha256); byte
# ranges are honoured except under the org "norange". A fixture file with a
# FILE.flaky beside it breaks the connection half-way the first time it is
# sent; one with FILE.stall sends half and then waits.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null 2>&1 || skip_all "python3 is not installed"
command -v curl >/dev/null 2>&1 || skip_all "curl is not installed"

SRV=$TMP/srv
cat >"$TMP/server.py" <<'EOF'
import http.server, hashlib, os, re, sys, time

root, portfile, logfile = sys.argv[1:4]

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        with open(logfile, "a") as log:
            log.write("%s range=%s auth=%s\n" % (self.path, self.headers.get("Range", "-"),
                                                  self.headers.get("Authorization", "-")))
        m = re.fullmatch(r"/(cdn/)?([^/]+)/([^/]+)/resolve/([^/]+)/([^/]+)", self.path)
        path = m and os.path.join(root, m.group(2), m.group(3), m.group(5))
        if not path or not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        if path.endswith(".safetensors") and not m.group(1):
            etag = path + ".etag"  # a wrong sha256 to announce, for the test
            sha = open(etag).read().strip() if os.path.exists(etag) else hashlib.sha256(data).hexdigest()
            self.send_response(302)
            self.send_header("Location", "/cdn" + self.path)
            self.send_header("X-Linked-Etag", '"%s"' % sha)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and m.group(2) != "norange":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(data))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if os.path.exists(path + ".flaky"):
            os.remove(path + ".flaky")
            self.wfile.write(data[start:(start + len(data)) // 2])
            self.close_connection = True
            return
        if os.path.exists(path + ".stall"):
            self.wfile.write(data[start:(start + len(data)) // 2])
            self.wfile.flush()
            time.sleep(60)
            return
        self.wfile.write(data[start:])

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
EOF

# Fixture repositories: a single-file model, the same under "norange", a
# sharded one, and one whose announced sha256 is wrong. The weights are
# random bytes: only their transfer is tested here.
mkdir -p "$SRV/org/tiny" "$SRV/org/sharded" "$SRV/org/corrupt"
cp "$TOP/data/pythia-14m.config.json" "$SRV/org/tiny/config.json"
head -c 200000 /dev/urandom >"$SRV/org/tiny/model.safetensors"
printf '{"version":"1.0","model":{"type":"BPE","vocab":{"a":0}}}\n' >"$SRV/org/tiny/tokenizer.json"
mkdir -p "$SRV/norange/tiny" && cp "$SRV/org/tiny/"* "$SRV/norange/tiny/"
cp "$SRV/org/tiny/config.json" "$SRV/org/tiny/tokenizer.json" "$SRV/org/sharded/"
head -c 70000 /dev/urandom >"$SRV/org/sharded/model-00001-of-00002.safetensors"
head -c 50000 /dev/urandom >"$SRV/org/sharded/model-00002-of-00002.safetensors"
cat >"$SRV/org/sharded/model.safetensors.index.json" <<'EOF'
{"metadata": {"total_size": 120000}, "weight_map": {
  "gpt_neox.embed_in.weight": "model-00001-of-00002.safetensors",
  "gpt_neox.final_layer_norm.weight": "model-00002-of-00002.safetensors",
  "embed_out.weight": "model-00002-of-00002.safetensors"}}
EOF
cp "$SRV/org/tiny/"* "$SRV/org/corrupt/"
printf '%064d\n' 0 >"$SRV/org/corrupt/model.safetensors.etag"

python3 "$TMP/server.py" "$SRV" "$TMP/port" "$TMP/requests" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$TMP"' EXIT
i=0
while [ ! -s "$TMP/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -s "$TMP/port" ] || { echo "1..0 # SKIP the loopback server did not start"; exit 0; }
export HF_ENDPOINT=http://127.0.0.1:$(cat "$TMP/port")
unset HF_TOKEN REVISION
FETCH=$TOP/scripts/fetch-model.sh

check "make fetch-model downloads config, weights and tokenizer from HF_ENDPOINT" \
	"make -s -C '$TOP' fetch-model MODEL_ID=org/tiny MODELS_DIR='$TMP/models' >'$TMP/out' 2>'$TMP/err' &&
	 ( cd '$TMP/models/tiny' && ls ) | tr '\n' ' ' | grep -qx 'config.json model.safetensors tokenizer.json ' &&
	 for f in config.json model.safetensors tokenizer.json; do
	   cmp \"$SRV/org/tiny/\$f\" \"$TMP/models/tiny/\$f\" || exit 1; done"
check "it prints each file's size and sha256" \
	"for f in config.json model.safetensors tokenizer.json; do
	   sum=\$(sha256sum '$SRV/org/tiny/'\$f | cut -d' ' -f1)
	   grep -Eq \"^\$f +[0-9.]+[KMG]?i?B? .*sha256 \$sum\\\$\" '$TMP/out' || exit 1; done &&
	 grep -q 'model.safetensors .*196KiB' '$TMP/out'"

# nothing left but the model: no staging directory beside it
leftovers() { ls -A "$1" | grep -q '\.fetch\.'; }

# a connection that breaks half-way continues with a Range request
: >"$SRV/org/tiny/model.safetensors.flaky"
: >"$TMP/requests"
check "a download cut half-way resumes from where it stopped" \
	"'$FETCH' org/tiny '$TMP/resume' >/dev/null 2>'$TMP/err' && grep -q 'interrupted after 100000 bytes' '$TMP/err' &&
	 grep -q 'model.safetensors range=bytes=100000-' '$TMP/requests' &&
	 cmp '$SRV/org/tiny/model.safetensors' '$TMP/resume/model.safetensors' &&
	 ! ls -A '$TMP/resume' | grep -q part && ! leftovers '$TMP'"
check "... and the directory has mkdir's mode" \
	"test \$(stat -c %a '$TMP/resume') = \$(mkdir '$TMP/m' && stat -c %a '$TMP/m')"
: >"$TMP/requests"
check "a second run skips the finished files" \
	"'$FETCH' org/tiny '$TMP/resume' >'$TMP/out' 2>&1 && ! test -s '$TMP/requests' &&
	 grep -q 'model.safetensors .*sha256' '$TMP/out'"
mkdir -p "$TMP/partial"
cp "$SRV/org/tiny/config.json" "$TMP/partial/"
: >"$TMP/requests"
check "an existing directory keeps its files and gets the missing ones" \
	"'$FETCH' org/tiny '$TMP/partial' >/dev/null 2>&1 && ! grep -q config.json '$TMP/requests' &&
	 for f in config.json model.safetensors tokenizer.json; do cmp '$SRV/org/tiny/'\$f '$TMP/partial/'\$f || exit 1; done &&
	 ! leftovers '$TMP'"

: >"$SRV/norange/tiny/model.safetensors.flaky"
check "a server without byte ranges gets a fresh download" \
	"'$FETCH' norange/tiny '$TMP/norange' >/dev/null 2>'$TMP/err' && grep -q 'cannot resume' '$TMP/err' &&
	 cmp '$SRV/norange/tiny/model.safetensors' '$TMP/norange/model.safetensors'"

check "a sharded model: the index and every shard it names" \
	"'$FETCH' org/sharded '$TMP/models/sharded' >/dev/null 2>&1 &&
	 for f in config.json model.safetensors.index.json model-00001-of-00002.safetensors \
	          model-00002-of-00002.safetensors tokenizer.json; do
	   cmp '$SRV/org/sharded/'\$f '$TMP/models/sharded/'\$f || exit 1; done &&
	 ! test -e '$TMP/models/sharded/model.safetensors'"

check "a download that does not match the announced sha256 fails and leaves nothing" \
	"'$FETCH' org/corrupt '$TMP/corrupt' >/dev/null 2>'$TMP/err'; test \$? -eq 1 &&
	 grep -q 'sha256 .* but the server says 0000' '$TMP/err' && ! test -e '$TMP/corrupt' && ! leftovers '$TMP'"

check "a missing model fails with the URL and leaves nothing" \
	"'$FETCH' org/nothing '$TMP/nothing' >/dev/null 2>'$TMP/err'; test \$? -eq 1 &&
	 grep -q 'org/nothing/resolve/main/config.json: download failed .*HTTP 404' '$TMP/err' &&
	 ! test -e '$TMP/nothing' && ! leftovers '$TMP'"
check "make fetch-model with no server: exit non-zero, no model directory, no MODELS_DIR it created" \
	"HF_ENDPOINT=http://127.0.0.1:1 make -s -C '$TOP' fetch-model MODEL_ID=org/tiny MODELS_DIR='$TMP/new/models' \
	   >/dev/null 2>'$TMP/err'; test \$? -ne 0 && grep -q 'download failed (curl exit 7' '$TMP/err' && ! test -e '$TMP/new'"
check "a missing shard leaves nothing, not even the index" \
	"rm '$SRV/org/sharded/model-00002-of-00002.safetensors' &&
	 '$FETCH' org/sharded '$TMP/noshard' >/dev/null 2>&1; test \$? -eq 1 && ! test -e '$TMP/noshard' && ! leftovers '$TMP'"

# SIGTERM, SIGINT or SIGHUP during a download: curl stops, nothing is left,
# and the exit status says which signal. INT and HUP get their default
# handling back first: a background job ignores INT, and under nohup HUP
# is ignored too, and a shell cannot trap what it started ignoring.
: >"$SRV/org/tiny/model.safetensors.stall"
for sig in TERM INT HUP; do
	: >"$TMP/requests"
	env --default-signal=INT,HUP "$FETCH" org/tiny "$TMP/sig" >/dev/null 2>&1 &
	pid=$!
	i=0
	while ! grep -q '^/cdn/org/tiny/.*model.safetensors' "$TMP/requests" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	sleep 0.3
	kill -$sig $pid
	wait $pid
	status=$?
	want=143; [ $sig = INT ] && want=130; [ $sig = HUP ] && want=129
	check "SIG$sig during the download: exit $want, nothing left" \
		"test $status -eq $want && ! test -e '$TMP/sig' && ! leftovers '$TMP'"
done
rm "$SRV/org/tiny/model.safetensors.stall"

: >"$TMP/requests"
check "HF_TOKEN and REVISION are used" \
	"HF_TOKEN=secret REVISION=v1 '$FETCH' org/tiny '$TMP/rev' >/dev/null 2>&1 &&
	 grep -q '^/org/tiny/resolve/v1/config.json .*auth=Bearer secret' '$TMP/requests'"

check "a MODEL_ID that is not owner/name is a usage error" \
	"'$FETCH' ../etc '$TMP/x' 2>/dev/null; test \$? -eq 2 && '$FETCH' pythia 2>/dev/null; test \$? -eq 2 &&
	 '$FETCH' a/b/c 2>/dev/null; test \$? -eq 2 && ! test -e '$TMP/x'"

done_testing
