build-fuzz/common/checkpoint.o: common/checkpoint.c common/checkpoint.h \
  common/model.h common/config.h common/safetensors.h \
  /usr/include/cjson/cJSON.h common/cli.h common/io.h

common/checkpoint.h:

common/model.h:

common/config.h:

common/safetensors.h:

/usr/include/cjson/cJSON.h:

common/cli.h:

common/io.h:
