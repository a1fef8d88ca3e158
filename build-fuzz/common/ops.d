build-fuzz/common/ops.o: common/ops.c common/ops.h common/gemv.h

common/ops.h:

common/gemv.h:
