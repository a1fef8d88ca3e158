build-fuzz/tests/fuzz/support.o: tests/fuzz/support.c tests/fuzz/fuzz.h \
  common/cli.h /usr/include/cjson/cJSON.h

tests/fuzz/fuzz.h:

common/cli.h:

/usr/include/cjson/cJSON.h:
