# lamini.mk — the instruction-tuning recipe as make targets: each one a
# readable pipeline of the tools. Included by the top Makefile.
#
#   make demo                 the whole job: split, encode, fine-tune, generate
#                             with the base and the fine-tuned model, score,
#                             compare, report, summary
#   make split encode finetune generate score evaluate report summary   its steps
#   make serve                the base and the fine-tuned model in a browser
#                             and over HTTP (neox-serve; SERVE_HOST, SERVE_PORT)
#
# Variables (make VAR=value):
#   MODEL    base checkpoint directory (config.json + model.safetensors);
#            default models/pythia-410m when present, else a small
#            Pythia-shaped model initialized from random weights (INIT)
#   INIT     config.json for that random model (data/pythia-14m.config.json)
#   OUT      output directory (out)
#   DATA     question/answer JSONL (data/lamini_docs.jsonl)
#   STEPS LR BATCH ACCUM WARMUP EVAL_EVERY   training (neox-train(1))
#   MAXNEW GEN_BATCH   tokens generated per answer, answers decoded together
#   EXAMPLES side-by-side answers in the report
#   NOTE     a paragraph at the top of the report (by default, with random
#            weights, one that says so)
#   TEMPLATE the prompt wrapped around each question
#
# Run again, with the same variables or others, it redoes only what is
# stale: each step depends on a file that lists the variables it uses
# ($(OUT)/settings/STEP), rewritten only when one of them changes.

OUT ?= out
DATA ?= data/lamini_docs.jsonl
INIT ?= data/pythia-14m.config.json
MODEL ?= $(if $(wildcard models/pythia-410m/config.json),models/pythia-410m,$(OUT)/base)
TEMPLATE ?= \#\#\# Question:\n{question}\n\n\#\#\# Answer:
MAXNEW ?= 100
GEN_BATCH ?= 8
EXAMPLES ?= 20
# The seed's recipe (lr 1e-6, 100 steps) moves a pretrained pythia-410m; a
# randomly initialized small model needs a larger rate and more steps. These
# were measured (greedy answers to the 140 test questions, 14m shape): 600
# steps at 2e-3 end 100% of the answers with EOS and loop in 1-3% (the random
# base in 12%) for each of five shuffling seeds; 300 steps at 1e-3 never
# stop; 800 steps at 2e-3, 600 at 3e-3 or 1000 at 1e-3 or 3e-3 loop in
# 19-45%. Cutting the loops (strip-prompt -r, neox-gen --no-repeat-ngram or
# --repetition-penalty) was measured too: it cuts the base's loops as well,
# or the answers before their EOS, so the answers are only truncated at
# MAXNEW tokens, as in the seed.
ifeq ($(MODEL),$(OUT)/base)
STEPS ?= 600
LR ?= 2e-3
WARMUP ?= 30
RANDOM_BASE = 1
NOTE ?= The base model has random weights (neox-train --init $(INIT)): what the fine-tuned model knows, it learned in the $(STEPS) training steps of this run.
else
STEPS ?= 100
LR ?= 1e-6
WARMUP ?= 1
endif
BATCH ?= 1
ACCUM ?= 4
EVAL_EVERY ?= 50

# The tools the recipes run (the sanitizer build sets its own).
T ?= $(abspath $(BIN))
FT := $(OUT)/finetuned

.PHONY: demo split encode finetune generate score evaluate report summary serve FORCE

# The wall time in the summary runs from here.
demo: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory summary DEMO_START=$$(date +%s)

# $(OUT)/settings/STEP: a VAR=value line for each variable in SETTINGS_STEP.
# Its recipe always runs but writes the file only when a value changed, so
# make redoes what depends on it then and only then.
SETTINGS_split = DATA
SETTINGS_encode = TEMPLATE
SETTINGS_init = INIT
SETTINGS_train = MODEL STEPS LR WARMUP BATCH ACCUM EVAL_EVERY
SETTINGS_generate = MODEL MAXNEW GEN_BATCH
SETTINGS_score = MODEL
SETTINGS_report = EXAMPLES NOTE
$(OUT)/settings/%: FORCE
	@mkdir -p $(@D)
	@printf '%s\n' $(foreach v,$(SETTINGS_$*),'$(v)=$($(v))') >$@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

# A random Pythia-shaped model stands in for the pretrained one when none
# was fetched (make fetch-model MODEL_ID=EleutherAI/pythia-410m).
$(OUT)/base/config.json: $(INIT) $(OUT)/settings/init
	@echo "demo: no pretrained model at models/pythia-410m: using random weights shaped by $(INIT)" >&2
	$(T)/neox-train --init $(INIT) --steps 0 -o $(OUT)/base --overwrite </dev/null

# One run of jsonl-split writes both files (a grouped target).
split: $(OUT)/train.jsonl
$(OUT)/train.jsonl $(OUT)/test.jsonl &: $(DATA) $(OUT)/settings/split
	$(T)/jsonl-split --train $(OUT)/train.jsonl --test $(OUT)/test.jsonl $(DATA)

encode: $(OUT)/train.tok $(OUT)/test.tok
$(OUT)/%.tok: $(OUT)/%.jsonl $(OUT)/settings/encode
	$(T)/bpe-encode --template '$(TEMPLATE)' <$< >$@

# A stale run in $(FT) is replaced (--overwrite): make only gets here when
# the data, the base model or a training setting changed.
finetune: $(FT)/model.safetensors
$(FT)/model.safetensors: $(OUT)/train.tok $(OUT)/test.tok $(MODEL)/config.json $(OUT)/settings/train
	$(T)/neox-train -m $(MODEL) -o $(FT) --overwrite --steps $(STEPS) --lr $(LR) --warmup $(WARMUP) \
	  --batch $(BATCH) --grad-accum $(ACCUM) --eval $(OUT)/test.tok --eval-every $(EVAL_EVERY) \
	  --template '$(TEMPLATE)' <$(OUT)/train.tok

# The base and the fine-tuned model side by side in a browser and behind
# OpenAI's API (neox-serve(1)), at http://$(SERVE_HOST):$(SERVE_PORT)/ until
# interrupted. The base is asked with the same template.
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 8080
serve: deps
	@$(MAKE) --no-print-directory all finetune
	$(T)/neox-serve -m base=$(MODEL) -m finetuned=$(FT) --template '$(TEMPLATE)' \
	  --host $(SERVE_HOST) --port $(SERVE_PORT)

# The answers keep their question, without the template around it, for the
# report.
generate: $(OUT)/base.answers.jsonl $(OUT)/finetuned.answers.jsonl
$(OUT)/base.answers.jsonl: $(OUT)/test.tok $(MODEL)/config.json $(OUT)/settings/generate
	$(T)/neox-gen -m $(MODEL) --batch $(GEN_BATCH) --max-new $(MAXNEW) <$(OUT)/test.tok | $(T)/strip-prompt -k | \
	  $(T)/bpe-encode -d --skip-special --template '$(TEMPLATE)' >$@
$(OUT)/finetuned.answers.jsonl: $(OUT)/test.tok $(FT)/model.safetensors $(OUT)/settings/generate
	$(T)/neox-gen -m $(FT) --batch $(GEN_BATCH) --max-new $(MAXNEW) <$(OUT)/test.tok | $(T)/strip-prompt -k | \
	  $(T)/bpe-encode -d --skip-special --template '$(TEMPLATE)' >$@

score: $(OUT)/base.score.jsonl $(OUT)/finetuned.score.jsonl
$(OUT)/base.score.jsonl: $(OUT)/test.tok $(MODEL)/config.json $(OUT)/settings/score
	$(T)/neox-gen -m $(MODEL) --score <$(OUT)/test.tok >$@
$(OUT)/finetuned.score.jsonl: $(OUT)/test.tok $(FT)/model.safetensors
	$(T)/neox-gen -m $(FT) --score <$(OUT)/test.tok >$@

COMPARE = $(T)/eval-compare --label base --score $(OUT)/base.score.jsonl $(OUT)/base.answers.jsonl \
	  --label finetuned --score $(OUT)/finetuned.score.jsonl $(OUT)/finetuned.answers.jsonl
RESULTS = $(OUT)/base.answers.jsonl $(OUT)/finetuned.answers.jsonl $(OUT)/base.score.jsonl $(OUT)/finetuned.score.jsonl

evaluate report: $(OUT)/report.html
$(OUT)/report.html: $(RESULTS) $(OUT)/settings/report
	$(COMPARE) --html $@ --examples $(EXAMPLES) --log $(FT)/log.jsonl $(if $(NOTE),--note '$(NOTE)')
	@echo "report: $@" >&2

# The table, the machine, the settings and the wall time, for quoting.
summary: $(OUT)/summary.md
$(OUT)/summary.md: $(OUT)/report.html
	$(COMPARE) | scripts/demo-summary.sh '$(OUT)' '$(DEMO_START)' '$(T)' \
	  'MODEL=$(MODEL)$(if $(RANDOM_BASE), (random weights: $(INIT)))' \
	  'STEPS=$(STEPS) LR=$(LR) WARMUP=$(WARMUP) BATCH=$(BATCH) ACCUM=$(ACCUM) MAXNEW=$(MAXNEW)' >$@
	@echo "summary: $@" >&2
