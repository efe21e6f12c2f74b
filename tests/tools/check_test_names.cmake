# cmake -DROOT=<source dir> -P check_test_names.cmake
# doctest_discover_tests registers one ctest per TEST_CASE and passes its name through a
# CMake list, which splits it at every ';': a case named "a; b" became the ctests "a" and
# " b", whose filters match no case, so it silently ran nothing under ctest (nine cases did,
# until 2026-12-01). Fails naming every file with a ';' in a test case's name.
file(GLOB_RECURSE sources ${ROOT}/tests/*.cpp ${ROOT}/tests/*.hpp ${ROOT}/tests/*.cu
     ${ROOT}/examples/*.cpp ${ROOT}/examples/*.hpp)
set(bad "")
foreach(f IN LISTS sources)
  file(READ "${f}" content)
  string(REGEX MATCH "TEST_CASE[A-Z_]*\\(\"[^\"\n]*;[^\"\n]*\"" hit "${content}")
  if(hit)
    string(REPLACE ";" "<;>" hit "${hit}")
    string(APPEND bad "\n  ${f}: ${hit}")
  endif()
endforeach()
if(bad)
  message(FATAL_ERROR "test case names with ';' (ctest splits them there and runs nothing; use ',' instead):${bad}")
endif()
message(STATUS "test case names: none holds a ';' (${ROOT})")
