#include "proxy/observe/status_board.h"

#include <utility>

namespace sidecar::proxy {

void StatusBoard::Publish(StatusPageData data) {
  std::lock_guard<std::mutex> lock(mutex_);
  latest_ = std::move(data);
}

std::optional<StatusPageData> StatusBoard::Latest() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return latest_;
}

void StatusBoard::SetTopology(std::vector<std::string> advertised,
                              std::optional<std::vector<std::string>> exposed) {
  std::lock_guard<std::mutex> lock(mutex_);
  advertised_ = std::move(advertised);
  if (exposed) {
    exposed_ = *std::move(exposed);
  }
}

std::vector<std::string> StatusBoard::TopologyWarnings() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> all = advertised_;
  all.insert(all.end(), exposed_.begin(), exposed_.end());
  return all;
}

}  // namespace sidecar::proxy
