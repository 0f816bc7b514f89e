# tests/imgtool.mk: imgtool tests (appended to TESTS)
