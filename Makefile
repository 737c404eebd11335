# Thin wrapper over meson for the two README commands. Everything real is in
# meson.build; `make` alone builds.
BUILD ?= build
MESON_FLAGS ?=
LISTEN ?= 127.0.0.1:8080
STATE_DIR ?= ./var

.PHONY: all setup build run test asan clean

all: build

setup:
	@tools/setup.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_FLAGS)

build: setup $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	$(BUILD)/daemon/finetuned serve --listen $(LISTEN) --state-dir $(STATE_DIR)

test: build
	meson test -C $(BUILD) --print-errorlogs --num-processes 2 || true
	@tools/test-summary.sh $(BUILD) tests

# ASan + UBSan build running the unit and integration suites (CI runs this too).
asan: setup
	[ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
	ninja -C build-asan
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	  meson test -C build-asan --suite unit --suite integration --print-errorlogs --num-processes 2 || true
	@tools/test-summary.sh build-asan asan

clean:
	rm -rf $(BUILD) build-asan
