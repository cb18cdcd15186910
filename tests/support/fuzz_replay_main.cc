// Replays a libFuzzer corpus through a fuzz target's entry point, as a GoogleTest, so the
// corpus runs in every CI build without clang's fuzzer runtime.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

std::vector<std::filesystem::path> g_corpus_dirs;

TEST(FuzzCorpusReplay, EveryCorpusFileRunsWithoutCrashing) {
  size_t replayed = 0;
  for (const auto& dir : g_corpus_dirs) {
    ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir << " is not a directory";
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
      if (!entry.is_regular_file()) {
        continue;
      }
      std::ifstream in(entry.path(), std::ios::binary);
      std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
      ++replayed;
    }
  }
  // An empty corpus would make this test pass without exercising anything.
  EXPECT_GT(replayed, 0u);
}

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    g_corpus_dirs.emplace_back(argv[i]);
  }
  return RUN_ALL_TESTS();
}
