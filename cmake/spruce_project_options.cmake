# Flags for spruce's own targets (tests, examples, benchmarks); never exported.
add_library(spruce_project_options INTERFACE)
# Warning flags reach only the language they belong to: nvcc rejects -Wpedantic and reads
# a bare -Werror differently; CUDA sources get nvcc's own "all warnings are errors".
target_compile_options(spruce_project_options INTERFACE
  "$<$<COMPILE_LANGUAGE:CXX>:-Wall;-Wextra;-Wpedantic;-Werror>"
  "$<$<COMPILE_LANGUAGE:CUDA>:--Werror=all-warnings>")
if(SPRUCE_SANITIZE)
  target_compile_options(spruce_project_options INTERFACE
    "$<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined;-fno-sanitize-recover=all;-fno-omit-frame-pointer>")
  target_link_options(spruce_project_options INTERFACE -fsanitize=address,undefined)
endif()

# The sanitizer pass (scripts/test.sh) compiles at -O0, which took about 30% less CPU time
# than -O1 over the whole build (1144 s against 1624 s; one unit alone, test_n_m.cpp, 21 s
# against 57 s), and gives the few targets whose tests run real workloads (the training
# library and the lab, large selections, the sparse products, the CUDA bodies on the host)
# these extra flags instead (-O1 there), so that they do not run many times slower.
set(SPRUCE_SANITIZE_HOT_FLAGS "" CACHE STRING
    "With SPRUCE_SANITIZE: extra compile flags for the targets spruce_sanitize_hot() names")
function(spruce_sanitize_hot)
  if(SPRUCE_SANITIZE AND SPRUCE_SANITIZE_HOT_FLAGS)
    foreach(target IN LISTS ARGN)
      target_compile_options(${target} PRIVATE "$<$<COMPILE_LANGUAGE:CXX>:${SPRUCE_SANITIZE_HOT_FLAGS}>")
    endforeach()
  endif()
endfunction()

find_program(SPRUCE_CCACHE ccache)
if(SPRUCE_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${SPRUCE_CCACHE})
endif()

# spruce_host_cpu_supports(<var> <flags> <feature>...): sets the cached <var> to whether this
# machine's CPU has every feature (names as __builtin_cpu_supports spells them: avx2, fma,
# avx512f, ...), by running a program built with <flags>. The project's programs that are
# built where they run (the training library, spruce-prune) default their instruction-set
# options to it.
function(spruce_host_cpu_supports var flags)
  include(CheckCXXSourceRuns)
  set(test "")
  foreach(feature IN LISTS ARGN)
    string(APPEND test " && __builtin_cpu_supports(\"${feature}\")")
  endforeach()
  set(CMAKE_REQUIRED_FLAGS "${flags}")
  check_cxx_source_runs("int main() { __builtin_cpu_init(); return (1${test}) ? 0 : 1; }" ${var})
endfunction()
