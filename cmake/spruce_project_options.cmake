# Flags for spruce's own targets (tests, examples, benchmarks); never exported.
add_library(spruce_project_options INTERFACE)
target_compile_options(spruce_project_options INTERFACE
  -Wall -Wextra -Wpedantic -Werror)
if(SPRUCE_SANITIZE)
  target_compile_options(spruce_project_options INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(spruce_project_options INTERFACE -fsanitize=address,undefined)
endif()

find_program(SPRUCE_CCACHE ccache)
if(SPRUCE_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${SPRUCE_CCACHE})
endif()
