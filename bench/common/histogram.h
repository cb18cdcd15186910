// Copyright the tls-sidecar authors.

#ifndef SIDECAR_BENCH_COMMON_HISTOGRAM_H_
#define SIDECAR_BENCH_COMMON_HISTOGRAM_H_

#include <array>
#include <bit>
#include <cstdint>

namespace sidecar::bench {

// LatencyHistogram records durations in nanoseconds into log-linear buckets (each power
// of two split into 32 linear sub-buckets, so a reported percentile is within ~3% of the
// true value), in the manner of HdrHistogram. Recording is O(1) and allocates nothing.
// Not thread-safe: one histogram per event loop.
class LatencyHistogram {
 public:
  void Record(uint64_t ns) {
    ++counts_[Index(ns)];
    ++total_;
    if (ns > max_) {
      max_ = ns;
    }
  }

  void Clear() {
    counts_.fill(0);
    total_ = 0;
    max_ = 0;
  }

  uint64_t total() const { return total_; }
  uint64_t max() const { return max_; }

  // Percentile returns the value in nanoseconds below which a fraction `q` (0..1) of the
  // recorded values lie, or 0 when nothing was recorded.
  uint64_t Percentile(double q) const {
    if (total_ == 0) {
      return 0;
    }
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(total_));
    if (rank >= total_) {
      rank = total_ - 1;
    }
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen > rank) {
        uint64_t value = Midpoint(i);
        return value < max_ ? value : max_;
      }
    }
    return max_;
  }

 private:
  static constexpr int kSubBits = 5;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;

  static size_t Index(uint64_t ns) {
    if (ns < kSub) {
      return static_cast<size_t>(ns);
    }
    const int exponent = 63 - std::countl_zero(ns);
    const int shift = exponent - kSubBits;
    return static_cast<size_t>((shift + 1) * kSub + ((ns >> shift) - kSub));
  }

  static uint64_t Midpoint(size_t index) {
    if (index < kSub) {
      return index;
    }
    const int shift = static_cast<int>(index / kSub) - 1;
    const uint64_t mantissa = index % kSub + kSub;
    return (mantissa << shift) + ((uint64_t{1} << shift) >> 1);
  }

  std::array<uint64_t, 64 * kSub> counts_{};
  uint64_t total_ = 0;
  uint64_t max_ = 0;
};

}  // namespace sidecar::bench

#endif  // SIDECAR_BENCH_COMMON_HISTOGRAM_H_
