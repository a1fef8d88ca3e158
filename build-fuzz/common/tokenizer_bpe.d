build-fuzz/common/tokenizer_bpe.o: common/tokenizer_bpe.c \
  common/tokenizer_internal.h common/tokenizer.h common/utf8.h \
  common/cli.h

common/tokenizer_internal.h:

common/tokenizer.h:

common/utf8.h:

common/cli.h:
