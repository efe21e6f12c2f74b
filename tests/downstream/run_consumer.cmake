# Builds and runs tests/downstream/consumer against spruce; called by the `downstream`
# ctest tests (see downstream.cmake) as
#   cmake -DMODE=package|subdirectory -DSPRUCE_SOURCE_DIR=... [-DSPRUCE_BUILD_DIR=...]
#         -DWORK_DIR=... -DGENERATOR=... -DCXX_COMPILER=... [-DBUILD_TYPE=...] ... -P run_consumer.cmake
#
#   package       `cmake --install SPRUCE_BUILD_DIR --prefix WORK_DIR/prefix`, then
#                 find_package(spruce CONFIG) with CMAKE_PREFIX_PATH=WORK_DIR/prefix
#   subdirectory  add_subdirectory(SPRUCE_SOURCE_DIR)
#
# Every step starts from an empty WORK_DIR; a failing step stops with its full output.
cmake_minimum_required(VERSION 3.20)

foreach(var MODE SPRUCE_SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: pass -D${var}=...")
  endif()
endforeach()
if(NOT MODE MATCHES "^(package|subdirectory)$")
  message(FATAL_ERROR "run_consumer.cmake: MODE must be package or subdirectory, not '${MODE}'")
endif()
if(MODE STREQUAL "package" AND NOT SPRUCE_BUILD_DIR)
  message(FATAL_ERROR "run_consumer.cmake: package mode needs -DSPRUCE_BUILD_DIR=<spruce build tree>")
endif()
if(NOT CTEST_COMMAND)
  get_filename_component(_bin "${CMAKE_COMMAND}" DIRECTORY)
  set(CTEST_COMMAND "${_bin}/ctest")
endif()

set(consumer_src "${CMAKE_CURRENT_LIST_DIR}/consumer")
set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/build")

# run_step(<description> <command>...): runs the command, fails the test with its output.
function(run_step what)
  message(STATUS "[${MODE}] ${what}")
  execute_process(COMMAND ${ARGN}
                  RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out
                  ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message("---- output of: ${cmd}\n${out}----")  # verbatim; FATAL_ERROR would reflow it
    message(FATAL_ERROR "[${MODE}] ${what} failed (exit ${rc}); its output is above")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

set(configure_args
  -S "${consumer_src}" -B "${consumer_build}"
  -G "${GENERATOR}"
  "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
  "-DSPRUCE_CONSUMER_MODE=${MODE}"
  # Only the prefix given here may satisfy find_package: no user or system registries.
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
  -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
if(GENERATOR_PLATFORM)
  list(APPEND configure_args -A "${GENERATOR_PLATFORM}")
endif()
if(GENERATOR_TOOLSET)
  list(APPEND configure_args -T "${GENERATOR_TOOLSET}")
endif()
if(MAKE_PROGRAM)
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(BUILD_TYPE)
  list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
endif()
if(CXX_COMPILER_LAUNCHER)
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER_LAUNCHER=${CXX_COMPILER_LAUNCHER}")
endif()

if(MODE STREQUAL "package")
  unset(ENV{DESTDIR})  # would redirect the install away from the prefix
  run_step("install ${SPRUCE_BUILD_DIR} into ${prefix}"
           "${CMAKE_COMMAND}" --install "${SPRUCE_BUILD_DIR}" --prefix "${prefix}")
  file(GLOB_RECURSE configs "${prefix}/*/spruceConfig.cmake")
  if(NOT EXISTS "${prefix}/include/spruce/spruce.hpp" OR NOT configs)
    message(FATAL_ERROR "[package] the install did not produce include/spruce/spruce.hpp "
                        "and a spruceConfig.cmake under ${prefix}:\n${step_output}")
  endif()
  list(APPEND configure_args "-DCMAKE_PREFIX_PATH=${prefix}")
else()
  list(APPEND configure_args "-DSPRUCE_SOURCE_DIR=${SPRUCE_SOURCE_DIR}")
endif()

run_step("configure the consumer" "${CMAKE_COMMAND}" ${configure_args})

if(MODE STREQUAL "package")
  # The package must come from the fresh install, not from a stray system copy.
  file(STRINGS "${consumer_build}/CMakeCache.txt" spruce_dir_line REGEX "^spruce_DIR:")
  string(REGEX REPLACE "^spruce_DIR:[A-Z]+=" "" spruce_dir "${spruce_dir_line}")
  file(REAL_PATH "${prefix}" real_prefix)
  file(REAL_PATH "${spruce_dir}" real_spruce_dir)
  string(FIND "${real_spruce_dir}/" "${real_prefix}/" at)
  if(NOT at EQUAL 0)
    message(FATAL_ERROR "[package] find_package(spruce) used '${spruce_dir}', "
                        "not the install under ${prefix}")
  endif()
endif()

set(build_args --build "${consumer_build}")
set(ctest_args --test-dir "${consumer_build}" --output-on-failure -V)
if(BUILD_TYPE)
  list(APPEND build_args --config "${BUILD_TYPE}")
  list(APPEND ctest_args -C "${BUILD_TYPE}")
endif()
run_step("build the consumer" "${CMAKE_COMMAND}" ${build_args})
run_step("run the consumer" "${CTEST_COMMAND}" ${ctest_args})

string(REGEX MATCH "spruce consumer OK[^\n]*" ok_line "${step_output}")
if(NOT ok_line)
  message(FATAL_ERROR "[${MODE}] the consumer ran but did not report success:\n${step_output}")
endif()
message(STATUS "[${MODE}] ${ok_line}")
