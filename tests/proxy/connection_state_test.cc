// The diagram at the top of proxy/net/connection.h and the table Connection::Enter checks
// (kTransitions, connection_state.h) say the same thing: every arrow of the diagram is a row
// of the table and every row is an arrow. Also the shape of the table itself.
#include "proxy/net/connection_state.h"

#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include "gtest/gtest.h"

namespace sidecar::proxy {
namespace {

using Arrow = std::pair<std::string, std::string>;  // from, to: enumerator names ("kSniffing")

std::string EnumeratorName(ConnectionState state) {
  return "k" + std::string(ConnectionStateName(state));
}

std::set<Arrow> TableArrows() {
  std::set<Arrow> arrows;
  for (const ConnectionTransition& t : kTransitions) {
    arrows.insert({EnumeratorName(t.from), EnumeratorName(t.to)});
  }
  return arrows;
}

// DiagramArrows reads the header comment's arrows: on a comment line with "──▶", the states
// before the first "──" go to the first state after "▶".
std::set<Arrow> DiagramArrows(const std::string& header) {
  std::set<Arrow> arrows;
  std::istringstream lines(header);
  std::regex state_name("k[A-Z][A-Za-z]*");
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("//", 0) != 0) {
      break;  // the comment at the top of the file is over
    }
    size_t head = line.find("▶");
    size_t shaft = line.find("──");
    if (head == std::string::npos || shaft == std::string::npos || shaft > head) {
      continue;
    }
    std::string sources = line.substr(0, shaft);
    std::string target_part = line.substr(head);
    std::smatch target;
    if (!std::regex_search(target_part, target, state_name)) {
      ADD_FAILURE() << "an arrow without a target state: " << line;
      continue;
    }
    int found = 0;
    for (auto it = std::sregex_iterator(sources.begin(), sources.end(), state_name);
         it != std::sregex_iterator(); ++it) {
      arrows.insert({it->str(), target.str()});
      ++found;
    }
    if (found == 0) {
      ADD_FAILURE() << "an arrow without a source state: " << line;
    }
  }
  return arrows;
}

std::string ReadConnectionHeader() {
  const char* root = std::getenv("SIDECAR_SOURCE_DIR");
  std::ifstream in(std::string(root != nullptr ? root : ".") + "/proxy/net/connection.h");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(ConnectionStateTest, DiagramInConnectionHeaderIsTheTableBothWays) {
  std::string header = ReadConnectionHeader();
  ASSERT_FALSE(header.empty()) << "proxy/net/connection.h not found (SIDECAR_SOURCE_DIR)";
  std::set<Arrow> diagram = DiagramArrows(header);
  std::set<Arrow> table = TableArrows();
  for (const Arrow& arrow : diagram) {
    EXPECT_TRUE(table.contains(arrow))
        << "the diagram has " << arrow.first << " -> " << arrow.second << ", the table not";
  }
  for (const Arrow& arrow : table) {
    EXPECT_TRUE(diagram.contains(arrow))
        << "the table has " << arrow.first << " -> " << arrow.second << ", the diagram not";
  }
  EXPECT_EQ(diagram.size(), kTransitions.size());
}

TEST(ConnectionStateTest, DiagramParserReadsListsOfSourcesAndIgnoresProse) {
  std::set<Arrow> arrows = DiagramArrows(
      "// kA, kB ──why, with kWords──▶ kC (then kD)\n"
      "// kClosing is where every connection ends; no arrow here\n"
      "#include <x>\n"
      "// kE ──after the comment──▶ kF\n");
  EXPECT_EQ(arrows, (std::set<Arrow>{{"kA", "kC"}, {"kB", "kC"}}));
}

TEST(ConnectionStateTest, TableHasNoDuplicateRows) {
  EXPECT_EQ(TableArrows().size(), kTransitions.size());
}

TEST(ConnectionStateTest, NothingLeavesClosingAndEveryOtherStateCanClose) {
  for (int i = 0; i < kConnectionStateCount; ++i) {
    auto state = static_cast<ConnectionState>(i);
    EXPECT_FALSE(IsLegalTransition(ConnectionState::kClosing, state));
    EXPECT_FALSE(IsLegalTransition(state, state)) << "a state never re-enters itself";
    if (state != ConnectionState::kClosing) {
      EXPECT_TRUE(IsLegalTransition(state, ConnectionState::kClosing))
          << ConnectionStateName(state) << " cannot close";
    }
  }
}

TEST(ConnectionStateTest, EveryStateIsReachableFromWhereConnectionsStart) {
  std::set<ConnectionState> reached = {ConnectionState::kSniffing, ConnectionState::kConnecting};
  for (bool grew = true; grew;) {
    grew = false;
    for (const ConnectionTransition& t : kTransitions) {
      if (reached.contains(t.from) && reached.insert(t.to).second) {
        grew = true;
      }
    }
  }
  EXPECT_EQ(reached.size(), static_cast<size_t>(kConnectionStateCount));
}

TEST(ConnectionStateTest, NoRefusalWithoutSniffingAndNoPlaintextAfterAHandshakeStarts) {
  // Egress never refuses: it has no client to answer (SPEC §2, no fallback).
  EXPECT_FALSE(IsLegalTransition(ConnectionState::kConnecting, ConnectionState::kRejecting));
  // Once TLS has begun on a side the only way to plaintext proxying is the handshake's end.
  EXPECT_FALSE(IsLegalTransition(ConnectionState::kHandshaking, ConnectionState::kSniffing));
  EXPECT_FALSE(IsLegalTransition(ConnectionState::kRejecting, ConnectionState::kProxying));
}

TEST(ConnectionStateTest, NamesAreDistinct) {
  std::set<std::string> names;
  for (int i = 0; i < kConnectionStateCount; ++i) {
    names.insert(EnumeratorName(static_cast<ConnectionState>(i)));
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(kConnectionStateCount));
  EXPECT_EQ(ConnectionStateName(ConnectionState::kCount), "unknown");
}

}  // namespace
}  // namespace sidecar::proxy
