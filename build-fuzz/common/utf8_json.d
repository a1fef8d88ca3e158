build-fuzz/common/utf8_json.o: common/utf8_json.c common/utf8_json.h \
  common/utf8.h

common/utf8_json.h:

common/utf8.h:
