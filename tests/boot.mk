# tests/boot.mk: boot tests (appended to TESTS)
