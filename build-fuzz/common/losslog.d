build-fuzz/common/losslog.o: common/losslog.c common/losslog.h \
  common/cli.h common/io.h /usr/include/cjson/cJSON.h

common/losslog.h:

common/cli.h:

common/io.h:

/usr/include/cjson/cJSON.h:
