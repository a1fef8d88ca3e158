build-fuzz/common/model.o: common/model.c common/model.h common/config.h \
  /usr/include/cjson/cJSON.h common/cli.h common/io.h common/ops.h \
  common/safetensors.h

common/model.h:

common/config.h:

/usr/include/cjson/cJSON.h:

common/cli.h:

common/io.h:

common/ops.h:

common/safetensors.h:
