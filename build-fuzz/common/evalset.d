build-fuzz/common/evalset.o: common/evalset.c common/evalset.h \
  common/metrics.h common/cli.h common/io.h /usr/include/cjson/cJSON.h

common/evalset.h:

common/metrics.h:

common/cli.h:

common/io.h:

/usr/include/cjson/cJSON.h:
