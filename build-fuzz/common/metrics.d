build-fuzz/common/metrics.o: common/metrics.c common/metrics.h \
  common/cli.h

common/metrics.h:

common/cli.h:
