# Downstream-consumer tests (label `downstream`): tests/downstream/consumer is configured,
# built and run against this spruce tree twice,
#   downstream:package       after `cmake --install` of this build tree into a scratch
#                            prefix, through find_package(spruce CONFIG REQUIRED);
#   downstream:subdirectory  through add_subdirectory(<spruce source dir>).
# Both use this build's generator and C++ compiler; each works in its own folder under
# <build>/tests/downstream and starts it afresh. Header-only: installing needs no build.
# Included from tests/CMakeLists.txt, so PROJECT_SOURCE_DIR is spruce's root.

set(_spruce_downstream_args
  "-DSPRUCE_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
  "-DGENERATOR=${CMAKE_GENERATOR}"
  "-DGENERATOR_PLATFORM=${CMAKE_GENERATOR_PLATFORM}"
  "-DGENERATOR_TOOLSET=${CMAKE_GENERATOR_TOOLSET}"
  "-DMAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}"
  "-DCXX_COMPILER=${CMAKE_CXX_COMPILER}"
  "-DCXX_COMPILER_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER}"
  "-DCTEST_COMMAND=${CMAKE_CTEST_COMMAND}"
  "-DBUILD_TYPE=$<CONFIG>")

add_test(NAME downstream:package
  COMMAND ${CMAKE_COMMAND} -DMODE=package
          "-DSPRUCE_BUILD_DIR=${CMAKE_BINARY_DIR}"
          "-DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/downstream/package"
          ${_spruce_downstream_args}
          -P ${CMAKE_CURRENT_LIST_DIR}/run_consumer.cmake)
add_test(NAME downstream:subdirectory
  COMMAND ${CMAKE_COMMAND} -DMODE=subdirectory
          "-DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/downstream/subdirectory"
          ${_spruce_downstream_args}
          -P ${CMAKE_CURRENT_LIST_DIR}/run_consumer.cmake)
set_tests_properties(downstream:package downstream:subdirectory PROPERTIES
  LABELS downstream
  TIMEOUT 600)
unset(_spruce_downstream_args)
