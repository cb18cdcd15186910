// The close reasons' table: a row per reason with a distinct label, and the rejections named
// one by one rather than by a range of values.
#include "proxy/base/close_reason.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace sidecar::proxy {
namespace {

TEST(CloseReasonTest, EveryReasonHasARowWithADistinctName) {
  std::set<std::string_view> names;
  for (int i = 0; i < kCloseReasonCount; ++i) {
    auto reason = static_cast<CloseReason>(i);
    EXPECT_EQ(kCloseReasons[i].reason, reason) << i;
    EXPECT_NE(CloseReasonName(reason), "unknown") << i;
    EXPECT_TRUE(names.insert(CloseReasonName(reason)).second) << CloseReasonName(reason);
  }
  EXPECT_EQ(CloseReasonName(CloseReason::kCount), "unknown");
  EXPECT_FALSE(IsRejection(CloseReason::kCount));
}

TEST(CloseReasonTest, OnlyThePeersEndingOrFailingIsNotARejection) {
  std::set<std::string_view> not_rejections;
  for (const CloseReasonInfo& row : kCloseReasons) {
    EXPECT_EQ(IsRejection(row.reason), row.is_rejection) << row.name;
    if (!row.is_rejection) {
      not_rejections.insert(row.name);
    }
  }
  EXPECT_EQ(not_rejections, (std::set<std::string_view>{"finished", "downstream_error",
                                                        "upstream_error", "tls_error"}));
}

// Logs, dashboards and alert rules key on these labels: a value keeps its name for ever.
TEST(CloseReasonTest, LabelsAreStable) {
  EXPECT_EQ(CloseReasonName(CloseReason::kPlaintextInRequireTls), "plaintext_in_requireTLS");
  EXPECT_EQ(CloseReasonName(CloseReason::kSniffEof), "sniff_eof");
  EXPECT_EQ(CloseReasonName(CloseReason::kEgressPeerUnavailable), "egress_peer_unavailable");
  EXPECT_EQ(static_cast<int>(CloseReason::kEgressPeerUnavailable), 19);
  EXPECT_EQ(CloseReasonName(CloseReason::kSniffError), "sniff_error");
  EXPECT_TRUE(IsRejection(CloseReason::kSniffError));
  EXPECT_EQ(CloseReasonName(CloseReason::kMaxEgressConnections), "max_egress_connections");
  EXPECT_EQ(static_cast<int>(CloseReason::kMaxEgressConnections), 21);
  EXPECT_TRUE(IsRejection(CloseReason::kMaxEgressConnections));
}

}  // namespace
}  // namespace sidecar::proxy
