build-fuzz/common/tokenizer_pretok.o: common/tokenizer_pretok.c \
  common/tokenizer_internal.h common/tokenizer.h common/utf8.h \
  common/utf8_class.h

common/tokenizer_internal.h:

common/tokenizer.h:

common/utf8.h:

common/utf8_class.h:
