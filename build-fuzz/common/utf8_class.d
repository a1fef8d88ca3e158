build-fuzz/common/utf8_class.o: common/utf8_class.c common/utf8_class.h

common/utf8_class.h:
