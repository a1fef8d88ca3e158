build-fuzz/common/gemm_amx.o: common/gemm_amx.c common/gemm_internal.h

common/gemm_internal.h:
