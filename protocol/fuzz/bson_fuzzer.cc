// Fuzzes BsonView::Parse and every accessor; a document that parses must be rebuilt byte for
// byte by BsonWriter from its elements (the writer and reader agree on the encoding).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "protocol/bson.h"

namespace {

using sidecar::protocol::BsonElement;
using sidecar::protocol::BsonView;
using sidecar::protocol::BsonWriter;

void Touch(const BsonView& view, int depth) {
  for (const BsonElement& element : view) {
    (void)element.AsString();
    (void)element.AsInt64();
    (void)element.AsInt32();
    (void)element.AsDouble();
    (void)element.AsBool();
    (void)element.IsTrue();
    (void)element.AsBinary();
    (void)element.AsObjectId();
    (void)element.AsDateTime();
    (void)element.AsTimestamp();
    if (std::optional<BsonView> child = element.AsDocument()) {
      // A nested view must itself be a valid document.
      if (!BsonView::Parse(child->bytes()).ok()) {
        std::abort();
      }
      Touch(*child, depth + 1);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::Span<const uint8_t> input(data, size);
  (void)BsonView::ParsePrefix(input);
  absl::StatusOr<BsonView> view = BsonView::Parse(input);
  if (!view.ok()) {
    return 0;
  }
  Touch(*view, 0);
  if (view->First().has_value() != !view->empty()) {
    std::abort();
  }
  BsonWriter writer;
  for (const BsonElement& element : *view) {
    writer.AppendValue(element.type(), element.key(), element.value_bytes());
    (void)view->Find(element.key());
  }
  std::vector<uint8_t> rebuilt = writer.Finish();
  if (rebuilt != std::vector<uint8_t>(input.begin(), input.end())) {
    std::abort();
  }
  return 0;
}
