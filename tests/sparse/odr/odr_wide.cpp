// Built with -mavx2 -mfma (tests/CMakeLists.txt): the wide unit of the ODR test.
#define ODR_UNIT odr_wide
#include "odr_unit.hpp"
