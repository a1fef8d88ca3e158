build-fuzz/common/html.o: common/html.c common/html.h

common/html.h:
