build-fuzz/common/config.o: common/config.c common/config.h \
  /usr/include/cjson/cJSON.h common/cli.h common/io.h

common/config.h:

/usr/include/cjson/cJSON.h:

common/cli.h:

common/io.h:
