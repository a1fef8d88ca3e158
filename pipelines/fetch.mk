# fetch.mk — download a pretrained model from Hugging Face (or a mirror).
#
#   make fetch-model MODEL_ID=EleutherAI/pythia-410m
#
# puts config.json, model.safetensors (or its shards) and tokenizer.json in
# $(MODELS_DIR)/pythia-410m with curl, showing each file's size and sha256.
# The directory appears only when every file is complete; a failed fetch
# leaves nothing behind. HF_ENDPOINT (a mirror), REVISION and
# HF_TOKEN are read from the environment; see scripts/fetch-model.sh.

MODEL_ID ?= EleutherAI/pythia-410m
MODELS_DIR ?= models

.PHONY: fetch-model
fetch-model:
	scripts/fetch-model.sh '$(MODEL_ID)' '$(MODELS_DIR)/$(notdir $(MODEL_ID))'
