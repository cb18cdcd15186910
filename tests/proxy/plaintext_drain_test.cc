#include "proxy/control/plaintext_drain.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <chrono>
#include <string>
#include <vector>

namespace sidecar::proxy {
namespace {

ConnectionRef Ref(uint64_t n) { return {n, "10.0.0.1:" + std::to_string(40000 + n)}; }

std::vector<uint64_t> Ids(const std::vector<PlannedClose>& plan) {
  std::vector<uint64_t> ids;
  for (const PlannedClose& close : plan) {
    ids.push_back(close.connection.id);
  }
  return ids;
}

TEST(PlanDrainTest, SpacesClosesEvenlyOverTheWindow) {
  std::vector<DrainCandidate> candidates;
  for (int i = 0; i < 10; ++i) {
    candidates.push_back({i % 2, Ref(100 + i), false});
  }
  std::vector<PlannedClose> plan = PlanDrain(candidates, 2000);
  ASSERT_EQ(plan.size(), 10u);
  for (size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ(plan[i].delay_ms, 200 * i);
    EXPECT_EQ(plan[i].connection, Ref(100 + i));
    EXPECT_EQ(plan[i].worker, static_cast<int>(i % 2));
  }
}

TEST(PlanDrainTest, ClosesMembersLast) {
  std::vector<PlannedClose> plan = PlanDrain(
      {{0, Ref(1), true}, {0, Ref(2), false}, {1, Ref(3), true}, {1, Ref(4), false}}, 4000);
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(Ids(plan), (std::vector<uint64_t>{2, 4, 1, 3}));
  EXPECT_EQ(plan[3].delay_ms, 3000u);
}

TEST(PlanDrainTest, ZeroWindowClosesEverythingAtOnceAndEmptyPlansAreEmpty) {
  std::vector<PlannedClose> plan = PlanDrain({{0, Ref(1), false}, {0, Ref(2), false}}, 0);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].delay_ms, 0u);
  EXPECT_EQ(plan[1].delay_ms, 0u);
  EXPECT_TRUE(PlanDrain({}, 1000).empty());
}

TEST(DrainSchedulerTest, HandsOutClosesAtTheirTimesOnTheLoop) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  auto started = std::chrono::steady_clock::now();
  std::vector<std::pair<uint64_t, int64_t>> closed;  // id, ms since start
  {
    auto scheduler =
        DrainScheduler::Create(&loop, [&](int worker, std::vector<ConnectionRef> refs) {
          for (const ConnectionRef& ref : refs) {
            closed.emplace_back(ref.id, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now() - started)
                                                 .count());
          }
        });
    ASSERT_TRUE(scheduler.ok());
    EXPECT_EQ(
        (*scheduler)
            ->Start(PlanDrain({{0, Ref(1), false}, {1, Ref(2), false}, {0, Ref(3), false}}, 300)),
        0u);
    EXPECT_EQ(closed.size(), 1u);  // the first close is due at once
    EXPECT_EQ((*scheduler)->pending(), 2u);
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_EQ((*scheduler)->pending(), 0u);
    (*scheduler)->Stop();
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  ASSERT_EQ(closed.size(), 3u);
  EXPECT_EQ(closed[0].first, 1u);
  EXPECT_EQ(closed[1].first, 2u);
  EXPECT_EQ(closed[2].first, 3u);
  EXPECT_GE(closed[1].second, 95);
  EXPECT_GE(closed[2].second, 195);
  EXPECT_LT(closed[2].second, 1000);
}

TEST(DrainSchedulerTest, ANewPlanReplacesThePendingOne) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  std::vector<uint64_t> closed;
  {
    auto scheduler = DrainScheduler::Create(&loop, [&](int, std::vector<ConnectionRef> refs) {
      for (const ConnectionRef& ref : refs) {
        closed.push_back(ref.id);
      }
    });
    ASSERT_TRUE(scheduler.ok());
    (*scheduler)->Start(PlanDrain({{0, Ref(1), false}, {0, Ref(2), false}}, 60000));
    EXPECT_EQ((*scheduler)->Start(PlanDrain({{0, Ref(7), false}, {0, Ref(8), false}}, 50)), 1u);
    uv_run(&loop, UV_RUN_DEFAULT);
    (*scheduler)->Stop();
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  EXPECT_EQ(closed, (std::vector<uint64_t>{1, 7, 8}));
}

}  // namespace
}  // namespace sidecar::proxy
