build-fuzz/common/cli.o: common/cli.c common/cli.h

common/cli.h:
