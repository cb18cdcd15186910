// HttpRequest sends one HTTP/1.0 request to 127.0.0.1:`port` with civetweb's client and
// returns the body; `status` gets the status code (-1 when nothing answered, the body is
// then civetweb's error), `headers` (when given) the response headers, one "Name: value"
// line each. For the tests of the metrics listener; header-only, as its users link civetweb.
#ifndef SIDECAR_TESTS_SUPPORT_HTTP_GET_H_
#define SIDECAR_TESTS_SUPPORT_HTTP_GET_H_

#include <civetweb.h>

#include <string>

namespace sidecar::test_support {

inline std::string HttpRequest(int port, const char* path, int* status,
                               std::string* headers = nullptr, const char* method = "GET") {
  char error[256] = {};
  mg_connection* connection = mg_download("127.0.0.1", port, 0, error, sizeof(error),
                                          "%s %s HTTP/1.0\r\n\r\n", method, path);
  if (connection == nullptr) {
    *status = -1;
    return error;
  }
  const mg_response_info* info = mg_get_response_info(connection);
  *status = info->status_code;
  if (headers != nullptr) {
    headers->clear();
    for (int i = 0; i < info->num_headers; ++i) {
      *headers += std::string(info->http_headers[i].name) + ": " + info->http_headers[i].value +
                  "\n";
    }
  }
  std::string body;
  char buffer[4096];
  int n;
  while ((n = mg_read(connection, buffer, sizeof(buffer))) > 0) {
    body.append(buffer, n);
  }
  mg_close_connection(connection);
  return body;
}

}  // namespace sidecar::test_support

#endif  // SIDECAR_TESTS_SUPPORT_HTTP_GET_H_
