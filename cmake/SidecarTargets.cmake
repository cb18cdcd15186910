# One helper per kind of target, so every library, test, fuzzer and bench is built alike.

set(SIDECAR_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)
set(SIDECAR_SANITIZER_FLAGS)
if(SIDECAR_SANITIZE)
  set(SIDECAR_SANITIZER_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_compile_options(${SIDECAR_SANITIZER_FLAGS})
  add_link_options(${SIDECAR_SANITIZER_FLAGS})
endif()

# ThreadSanitizer (clang; tests/run.sh --tsan, build-tsan/): for the tests that run the sidecar
# with several loops. It cannot be combined with ASan, hence its own build directory.
option(SIDECAR_TSAN "Build everything with ThreadSanitizer" OFF)
if(SIDECAR_TSAN)
  if(SIDECAR_SANITIZE OR SIDECAR_FUZZ)
    message(FATAL_ERROR "SIDECAR_TSAN cannot be combined with SIDECAR_SANITIZE or SIDECAR_FUZZ")
  endif()
  set(SIDECAR_SANITIZER_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
  add_compile_options(${SIDECAR_SANITIZER_FLAGS})
  add_link_options(${SIDECAR_SANITIZER_FLAGS})
endif()

# With SIDECAR_FUZZ every library of the project carries coverage instrumentation, so a
# fuzzer sees the branches of what it drives (sidecar_fuzzer instruments only the target's own
# source); whatever links them then needs the sanitizer runtimes too.
set(SIDECAR_FUZZ_LIBRARY_FLAGS)
if(SIDECAR_FUZZ)
  set(SIDECAR_FUZZ_LIBRARY_FLAGS -fsanitize=fuzzer-no-link,address,undefined)
endif()

# sidecar_library(NAME SOURCES ... DEPS ...): a static library whose headers are included
# from the project root ("protocol/sniffer.h").
function(sidecar_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${name} PRIVATE ${SIDECAR_WARNINGS})
  target_compile_definitions(${name} PUBLIC TOML_EXCEPTIONS=0)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  if(SIDECAR_FUZZ)
    target_compile_options(${name} PRIVATE ${SIDECAR_FUZZ_LIBRARY_FLAGS})
    target_link_options(${name} INTERFACE -fsanitize=address,undefined)
  endif()
endfunction()

# sidecar_test(NAME SOURCES ... DEPS ... [LABELS ...]): a GoogleTest binary registered with ctest.
function(sidecar_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${SIDECAR_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main GTest::gmock)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "unit;${ARG_LABELS}"
    ENVIRONMENT "SIDECAR_SOURCE_DIR=${PROJECT_SOURCE_DIR};SIDECAR_BINARY_DIR=${PROJECT_BINARY_DIR}")
endfunction()

# sidecar_fuzzer(NAME SOURCE file CORPUS dir DEPS ...): the libFuzzer target NAME (only with
# SIDECAR_FUZZ and clang) and, always, NAME_replay: a GoogleTest that runs every file of the
# corpus through the same entry point, so the corpus is exercised by every CI run.
function(sidecar_fuzzer name)
  cmake_parse_arguments(ARG "" "SOURCE;CORPUS" "DEPS" ${ARGN})
  if(SIDECAR_FUZZ)
    add_executable(${name} ${ARG_SOURCE})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  endif()
  add_executable(${name}_replay ${ARG_SOURCE} ${PROJECT_SOURCE_DIR}/tests/support/fuzz_replay_main.cc)
  target_link_libraries(${name}_replay PRIVATE ${ARG_DEPS} GTest::gtest)
  target_include_directories(${name}_replay PRIVATE ${PROJECT_SOURCE_DIR})
  add_test(NAME ${name}_replay COMMAND ${name}_replay ${ARG_CORPUS})
  set_tests_properties(${name}_replay PROPERTIES TIMEOUT 120 LABELS "unit;fuzz")
endfunction()

# sidecar_binary(NAME SOURCES ... DEPS ...): an executable of the product, tests or bench.
function(sidecar_binary name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${SIDECAR_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
endfunction()
