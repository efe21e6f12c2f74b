#pragma once

#include <string>
#include <string_view>

#include "spruce/core/shape.hpp"

namespace spruce::io {

/// One RFC 4180 field: quoted, with doubled quotes, when it holds a separator, a quote, a
/// line break or edge spaces (which some readers trim); verbatim otherwise. Names of
/// tensors ("features.0.weight", "a,b") go through it so that every reader (pandas,
/// gnuplot, a spreadsheet) splits the line where the writer meant.
inline std::string csv_field(std::string_view s) {
  const bool quote = s.find_first_of(",\"\r\n") != std::string_view::npos ||
                     (!s.empty() && (s.front() == ' ' || s.back() == ' '));
  if (!quote) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + '"';
}

/// A real number as a CSV field: the shortest decimal that reads back to exactly `x`
/// ("0.5", "0.30000000000000004", "nan", "inf"), so a table loses no precision.
inline std::string csv_number(double x) { return spruce::detail::shortest_decimal(x); }

}  // namespace spruce::io
