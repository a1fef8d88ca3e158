# fuzz.mk — fuzzing the parsers; included by the top Makefile.
#
#   make fuzz           build every harness tests/fuzz/fuzz_NAME.c with clang's
#                       libFuzzer, AddressSanitizer and UBSan into build-fuzz/ and
#                       run each for FUZZ_SECONDS (all together about 10 minutes)
#   make fuzz-NAME      fuzz one target
#   make fuzz-merge     add to tests/fuzz/corpus/NAME/ the inputs of the last
#                       runs (build-fuzz/corpus/NAME/) that reach new coverage
#   make fuzz-regress   replay the seed corpus tests/fuzz/corpus/NAME/ and the
#                       regression inputs tests/fuzz/regress/NAME/ through each
#                       harness built with $(CC), without libFuzzer (make test
#                       does this too, in tests/t70-fuzz-regress.sh)
#
# A finding is saved as build-fuzz/findings/NAME/crash-* (or leak-, timeout-,
# oom-); once fixed, copy it to tests/fuzz/regress/NAME/. New inputs the
# fuzzer finds go to build-fuzz/corpus/NAME/, not into the repository.
# Needs clang and its libFuzzer runtime (Debian 12: apt-get install clang,
# which brings libclang-rt-14-dev). make test needs neither.

FUZZ_SRC = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_TARGETS = $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_SUPPORT = tests/fuzz/support.c
FUZZ_REPLAY = $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%-replay)

FUZZ_BUILD = build-fuzz
FUZZ_CC = clang
FUZZ_CFLAGS = -O1 -g $(ARCH) -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
              -fno-sanitize-recover=undefined
FUZZ_TOTAL_SECONDS ?= 600
FUZZ_SECONDS ?= $(shell echo $$(( $(FUZZ_TOTAL_SECONDS) / $(words $(FUZZ_TARGETS)) )))
# -close_fd_mask=2: the harnesses' rejected inputs each print a message;
# libFuzzer and the sanitizers still report on their own descriptor.
FUZZ_RUN_FLAGS = -close_fd_mask=2 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
# More libFuzzer flags, e.g. FUZZ_EXTRA='-fork=1 -ignore_crashes=1' to keep
# going past findings and collect them all.
FUZZ_EXTRA ?=
FUZZ_DICT = tests/fuzz/json.dict
# Per-target flags.
FUZZ_FLAGS_config = -dict=$(FUZZ_DICT)
FUZZ_FLAGS_safetensors = -dict=$(FUZZ_DICT) -max_len=8192
FUZZ_FLAGS_tokenizer_json = -dict=$(FUZZ_DICT) -max_len=16384
FUZZ_FLAGS_jsonl = -dict=$(FUZZ_DICT)
FUZZ_FLAGS_jsonl_split = -dict=$(FUZZ_DICT)
FUZZ_FLAGS_eval = -dict=$(FUZZ_DICT)

.PHONY: fuzz fuzz-build fuzz-merge fuzz-regress $(FUZZ_TARGETS:%=fuzz-%)

all: $(FUZZ_REPLAY)

$(BUILD)/fuzz/%-replay: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/support.o $(BUILD)/tests/fuzz/replay.o \
                        $(BUILD)/libtunepipe.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/fuzz/%-fuzz: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/support.o $(BUILD)/libtunepipe.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $^ $(LDLIBS)

fuzz-regress: $(FUZZ_REPLAY)
	@for t in $(FUZZ_TARGETS); do \
	  echo "$$t:"; \
	  $(BUILD)/fuzz/$$t-replay $$(ls -d tests/fuzz/corpus/$$t tests/fuzz/regress/$$t 2>/dev/null) || exit 1; \
	done

fuzz-build:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) CFLAGS='$(FUZZ_CFLAGS)' \
	  $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz/%-fuzz)

fuzz: fuzz-build
	@echo "fuzz: $(words $(FUZZ_TARGETS)) targets, $(FUZZ_SECONDS) s each"
	@failed=; for t in $(FUZZ_TARGETS); do $(MAKE) --no-print-directory fuzz-run-$$t || failed="$$failed $$t"; done; \
	  if [ -n "$$failed" ]; then echo "fuzz: findings in$$failed (see $(FUZZ_BUILD)/findings/)"; exit 1; fi

fuzz-merge: fuzz-build
	@for t in $(FUZZ_TARGETS); do $(MAKE) --no-print-directory fuzz-merge-$$t || exit 1; done

fuzz-merge-%:
	@mkdir -p tests/fuzz/corpus/$*
	@if [ -d $(FUZZ_BUILD)/corpus/$* ]; then \
	  $(FUZZ_BUILD)/fuzz/$*-fuzz -merge=1 -close_fd_mask=2 $(FUZZ_FLAGS_$*) tests/fuzz/corpus/$* \
	    $(FUZZ_BUILD)/corpus/$* 2>&1 | sed -n 's/^MERGE-OUTER: \([0-9]*\) new files.*/$*: \1 new inputs/p'; fi

$(FUZZ_TARGETS:%=fuzz-%): fuzz-%: fuzz-build
	@$(MAKE) --no-print-directory fuzz-run-$*

fuzz-run-%:
	@mkdir -p $(FUZZ_BUILD)/corpus/$* $(FUZZ_BUILD)/findings/$*
	$(FUZZ_BUILD)/fuzz/$*-fuzz $(FUZZ_RUN_FLAGS) $(FUZZ_FLAGS_$*) $(FUZZ_EXTRA) -max_total_time=$(FUZZ_SECONDS) \
	  -artifact_prefix=$(FUZZ_BUILD)/findings/$*/ $(FUZZ_BUILD)/corpus/$* \
	  $$(ls -d tests/fuzz/corpus/$* tests/fuzz/regress/$* 2>/dev/null)

clean: fuzz-clean
.PHONY: fuzz-clean
fuzz-clean:
	rm -rf $(FUZZ_BUILD)
