#include "protocol/hello_probe.h"

#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "protocol/bson.h"
#include "protocol/wire.h"

namespace sidecar::protocol {

std::vector<uint8_t> BuildHelloProbe(int32_t request_id) {
  BsonWriter writer;
  writer.AppendInt32("hello", 1).AppendString("$db", "admin");
  std::vector<uint8_t> body = writer.Finish();
  return BuildOpMsg(request_id, 0, body);
}

absl::StatusOr<HelloSummary> ParseHelloReply(absl::Span<const uint8_t> message) {
  absl::Span<const uint8_t> body;
  Frame frame = FrameMessage(message);
  if (frame.status != ParseStatus::kDone || frame.size != message.size()) {
    return absl::InvalidArgumentError("the hello reply is not one whole message");
  }
  if (frame.header.op_code == static_cast<int32_t>(OpCode::kMsg)) {
    auto msg = ParseOpMsg(message);
    if (!msg.ok()) {
      return msg.status();
    }
    body = msg->body;
  } else if (frame.header.op_code == static_cast<int32_t>(OpCode::kReply)) {
    auto reply = ParseOpReply(message);
    if (!reply.ok()) {
      return reply.status();
    }
    if (reply->documents.empty()) {
      return absl::InvalidArgumentError("the hello reply holds no document");
    }
    body = reply->documents.front();
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("the hello reply has opcode ", std::string(OpCodeName(frame.header.op_code))));
  }
  auto document = BsonView::Parse(body);
  if (!document.ok()) {
    return document.status();
  }
  auto ok = document->Find("ok");
  if (!ok.has_value() || ok->AsDouble().value_or(0) != 1) {
    std::string errmsg;
    if (auto e = document->Find("errmsg"); e.has_value()) {
      errmsg = std::string(e->AsString().value_or(""));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("answered hello with ok: 0", errmsg.empty() ? "" : ": ", errmsg));
  }
  HelloSummary summary;
  auto text = [&](std::string_view key) {
    auto e = document->Find(key);
    return e.has_value() ? std::string(e->AsString().value_or("")) : std::string();
  };
  summary.set_name = text("setName");
  summary.me = text("me");
  for (std::string_view key : {"hosts", "passives", "arbiters"}) {
    auto list = document->Find(key);
    if (!list.has_value()) {
      continue;
    }
    auto array = list->AsDocument();
    if (!array.has_value()) {
      continue;
    }
    for (const BsonElement& element : *array) {
      if (auto host = element.AsString(); host.has_value()) {
        summary.hosts.emplace_back(*host);
      }
    }
  }
  for (std::string_view key : {"isWritablePrimary", "ismaster"}) {
    if (auto e = document->Find(key); e.has_value()) {
      summary.writable_primary = e->IsTrue();
      break;
    }
  }
  if (auto e = document->Find("maxWireVersion"); e.has_value()) {
    summary.max_wire_version = e->AsInt32().value_or(0);
  }
  return summary;
}

}  // namespace sidecar::protocol
