build-fuzz/common/blas.o: common/blas.c common/blas.h

common/blas.h:
