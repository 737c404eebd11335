/* fuzz.h - the libFuzzer entry point every harness in tests/fuzz defines. Built
 * two ways: with replay.c as a plain program that runs a committed corpus (suite
 * 'fuzz', ordinary CI), and with clang -fsanitize=fuzzer for real fuzzing
 * (`ninja -C build fuzz-libfuzzer`, when clang is installed). */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
