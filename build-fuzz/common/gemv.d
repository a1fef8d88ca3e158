build-fuzz/common/gemv.o: common/gemv.c common/gemv.h common/cli.h

common/gemv.h:

common/cli.h:
