build-fuzz/common/io.o: common/io.c common/io.h common/cli.h

common/io.h:

common/cli.h:
