#pragma once

#include <filesystem>
#include <string>

#include "spruce/io/atomic_file.hpp"
#include "spruce/io/csv.hpp"
#include "spruce/prune/sensitivity.hpp"

namespace spruce::io {

/// A sensitivity table as CSV: the header `tensor,sparsity,metric,pruned,size,
/// actual_sparsity,baseline`, then one line per row ending in '\n'. Real numbers are
/// written as the shortest decimal that reads back to the same double (so no precision is
/// lost); names are quoted per RFC 4180 when they hold a comma, a quote, a line break or
/// edge spaces. The baseline repeats on every line so each line stands alone (pandas,
/// gnuplot).
inline std::string csv(const sensitivity_table& t) {
  std::string s = "tensor,sparsity,metric,pruned,size,actual_sparsity,baseline\n";
  const std::string base = csv_number(t.baseline);
  for (const auto& r : t.rows) {
    s += csv_field(r.tensor);
    s += ',' + csv_number(r.sparsity);
    s += ',' + csv_number(r.metric);
    s += ',' + std::to_string(r.pruned);
    s += ',' + std::to_string(r.size);
    s += ',' + csv_number(r.actual_sparsity);
    s += ',' + base + '\n';
  }
  return s;
}

/// Writes csv(t) to `path` atomically (write_file_atomically): a reader or a crash sees
/// the old file or the complete new table. Throws spruce::error naming `path` when the
/// directory is missing or not writable or the rename fails; an existing `path` is left
/// as it was then.
inline void write_csv(const sensitivity_table& t, const std::filesystem::path& path) {
  write_file_atomically(path, csv(t), "the sensitivity table");
}

}  // namespace spruce::io
