# tests/server.mk: server tests (appended to TESTS)
