# bench: build fragment, included from the top-level Makefile.am
EXTRA_DIST += bench/bench.sh bench/bench.py bench/README.md
