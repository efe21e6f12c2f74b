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

find_program(SPRUCE_CCACHE ccache)
if(SPRUCE_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${SPRUCE_CCACHE})
endif()
