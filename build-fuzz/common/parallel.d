build-fuzz/common/parallel.o: common/parallel.c common/parallel.h \
  common/cli.h

common/parallel.h:

common/cli.h:
