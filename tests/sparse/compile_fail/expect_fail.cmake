# cmake -DCXX=<compiler> -DINCLUDE=<include dir> -DSOURCE=<file> -DEXPECT=<text> -P expect_fail.cmake
# Passes when SOURCE compiles with -DSPRUCE_COMPILE_FAIL_CONTROL (the control) and fails
# to compile without it, with EXPECT in the compiler's output.
execute_process(COMMAND ${CXX} -std=c++20 -fsyntax-only -I${INCLUDE} -DSPRUCE_COMPILE_FAIL_CONTROL ${SOURCE}
                RESULT_VARIABLE control_rc OUTPUT_VARIABLE control_out ERROR_VARIABLE control_out)
if(NOT control_rc EQUAL 0)
  message(FATAL_ERROR "the control (a valid sparse format) does not compile:\n${control_out}")
endif()
execute_process(COMMAND ${CXX} -std=c++20 -fsyntax-only -I${INCLUDE} ${SOURCE}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it passes a non-format to sparse::conv2d")
endif()
string(FIND "${out}" "${EXPECT}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the compiler refused ${SOURCE} without naming '${EXPECT}':\n${out}")
endif()
message(STATUS "refused as expected, naming '${EXPECT}'")
