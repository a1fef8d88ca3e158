build-fuzz/common/safetensors.o: common/safetensors.c \
  common/safetensors.h /usr/include/cjson/cJSON.h common/cli.h

common/safetensors.h:

/usr/include/cjson/cJSON.h:

common/cli.h:
