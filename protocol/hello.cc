#include "protocol/hello.h"

#include <algorithm>
#include <optional>

#include "absl/status/statusor.h"
#include "protocol/bson.h"

namespace sidecar::protocol {
namespace {

bool IsHelloCommand(std::string_view name) {
  // mongod accepts exactly these spellings (hello since 4.4.2/5.0; the two legacy ones).
  return name == "hello" || name == "isMaster" || name == "ismaster";
}

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

std::string StringField(const BsonView& document, std::string_view key) {
  std::optional<BsonElement> element = document.Find(key);
  if (!element) {
    return "";
  }
  return std::string(element->AsString().value_or(""));
}

HelloMetadata ReadMetadata(const BsonView& command) {
  HelloMetadata metadata;
  metadata.internal_client = command.Find("internalClient").has_value();
  std::optional<BsonElement> client_element = command.Find("client");
  std::optional<BsonView> client;
  if (client_element && client_element->type() == BsonType::kDocument) {
    client = client_element->AsDocument();
  }
  if (!client) {
    return metadata;
  }
  if (std::optional<BsonElement> application = client->Find("application")) {
    if (application->type() == BsonType::kDocument) {
      metadata.application = SanitizeLabel(StringField(*application->AsDocument(), "name"));
    }
  }
  if (std::optional<BsonElement> driver = client->Find("driver")) {
    if (driver->type() == BsonType::kDocument) {
      std::string name = StringField(*driver->AsDocument(), "name");
      std::string version = StringField(*driver->AsDocument(), "version");
      std::string both = name;
      if (!name.empty() && !version.empty()) {
        both += " ";
      }
      both += version;
      metadata.driver = SanitizeLabel(both);
    }
  }
  return metadata;
}

// InspectCommand fills the request from a command document.
void InspectCommand(const BsonView& command, RequestInfo& request) {
  std::optional<BsonElement> first = command.First();
  if (!first) {
    return;
  }
  request.command = SanitizeLabel(first->key(), 64);
  request.is_hello = IsHelloCommand(first->key());
  if (request.is_hello) {
    request.metadata = ReadMetadata(command);
  }
}

InspectResult Error(std::string_view reason) {
  InspectResult result;
  result.status = ParseStatus::kError;
  result.error = reason;
  return result;
}

}  // namespace

InspectResult InspectFirstRequest(absl::Span<const uint8_t> stream) {
  Frame frame = FrameMessage(stream);
  if (frame.status == ParseStatus::kNeedMore) {
    return InspectResult{};
  }
  if (frame.status == ParseStatus::kError) {
    return Error(frame.error);
  }
  absl::Span<const uint8_t> message = stream.first(frame.size);
  InspectResult result;
  result.status = ParseStatus::kDone;
  result.consumed = frame.size;
  result.request.request_id = frame.header.request_id;
  if (!IsKnownOpCode(frame.header.op_code)) {
    return Error("unknown opCode");
  }
  result.request.op_code = static_cast<OpCode>(frame.header.op_code);
  switch (result.request.op_code) {
    case OpCode::kMsg: {
      absl::StatusOr<OpMsg> msg = ParseOpMsg(message);
      if (!msg.ok()) {
        return Error("malformed OP_MSG");
      }
      // The body was validated by ParseOpMsg.
      absl::StatusOr<BsonView> body = BsonView::Parse(msg->body);
      if (body.ok()) {
        InspectCommand(*body, result.request);
      }
      return result;
    }
    case OpCode::kQuery: {
      absl::StatusOr<OpQuery> query = ParseOpQuery(message);
      if (!query.ok()) {
        return Error("malformed OP_QUERY");
      }
      if (!EndsWith(query->full_collection_name, ".$cmd")) {
        return result;  // a legacy find, not a command
      }
      absl::StatusOr<BsonView> command = BsonView::Parse(query->query);
      if (!command.ok()) {
        return Error("malformed OP_QUERY");
      }
      // Drivers talking to mongos wrap the command as {$query: {...}, $readPreference: ...};
      // mongod unwraps "$query" and "query" alike.
      if (std::optional<BsonElement> first = command->First();
          first && (first->key() == "$query" || first->key() == "query") &&
          first->type() == BsonType::kDocument) {
        InspectCommand(*first->AsDocument(), result.request);
      } else {
        InspectCommand(*command, result.request);
      }
      return result;
    }
    default:
      return result;
  }
}

std::string SanitizeLabel(std::string_view text, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  size_t i = 0;
  while (i < text.size()) {
    const uint8_t lead = static_cast<uint8_t>(text[i]);
    // Decode one UTF-8 sequence (RFC 3629): shortest form, no surrogates, <= U+10FFFF.
    size_t length = 0;
    uint32_t code_point = 0;
    if (lead < 0x80) {
      length = 1;
      code_point = lead;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
      code_point = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      code_point = lead & 0x0F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      code_point = lead & 0x07;
    }
    bool valid = length != 0 && i + length <= text.size();
    for (size_t k = 1; valid && k < length; ++k) {
      const uint8_t continuation = static_cast<uint8_t>(text[i + k]);
      if ((continuation & 0xC0) != 0x80) {
        valid = false;
      } else {
        code_point = (code_point << 6) | (continuation & 0x3F);
      }
    }
    if (valid &&
        ((length == 3 && (code_point < 0x800 || (code_point >= 0xD800 && code_point <= 0xDFFF))) ||
         (length == 4 && (code_point < 0x10000 || code_point > 0x10FFFF)))) {
      valid = false;
    }
    bool control = valid && (code_point < 0x20 || code_point == 0x7F ||
                             (code_point >= 0x80 && code_point <= 0x9F));
    if (!valid || control) {
      if (out.size() + 1 > max_bytes) {
        break;
      }
      out.push_back('?');
      i += valid ? length : 1;  // an invalid byte is replaced alone; resync on the next
      continue;
    }
    if (out.size() + length > max_bytes) {
      break;  // never cut inside a character
    }
    out.append(text.substr(i, length));
    i += length;
  }
  return out;
}

}  // namespace sidecar::protocol
