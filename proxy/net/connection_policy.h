// Connection::Policy is what differs between the two kinds of connection over the same
// endpoints and state machine: IngressPolicy (a client dialed our public port: sniff, admit
// or refuse, answer refusals, identify the client) and EgressPolicy (the local mongod dialed
// a peer through us: resolve, dial, TLS as the mode says, no fallback). Each is owned by its
// connection and called on its loop only.
#ifndef SIDECAR_PROXY_NET_CONNECTION_POLICY_H_
#define SIDECAR_PROXY_NET_CONNECTION_POLICY_H_

#include <netdb.h>
#include <sys/socket.h>
#include <uv.h>

#include <memory>
#include <string>
#include <string_view>

#include "proxy/net/chunk.h"
#include "proxy/net/connection.h"
#include "proxy/net/first_bytes.h"

namespace sidecar::proxy {

class Connection::Policy {
 public:
  virtual ~Policy() = default;
  // Start takes the first steps once the downstream socket and the timer are set up.
  virtual void Start() = 0;
  // OnClientBytes sees plaintext from downstream before it is forwarded; returns false when
  // it took the bytes (sniffing, refusing) and nothing is to be forwarded.
  virtual bool OnClientBytes(ChunkQueue& plaintext) = 0;
  // SniffedNothing: no byte of the connection has been read yet (for the drain).
  virtual bool SniffedNothing() const = 0;
  // OnUpstreamConnected: the dialed socket is up; returns false when nothing more is to be
  // done with it now.
  virtual bool OnUpstreamConnected() = 0;
  // OnUpstreamUnavailable: dialing failed (Connection::upstream_error_ says why).
  virtual void OnUpstreamUnavailable() = 0;
  virtual void OnHandshakeDone(Endpoint& side) = 0;
  virtual void OnHandshakeFailed(Endpoint& side) = 0;
  // OnClosing: BeginClose is closing the handles; cancel what the policy has in flight.
  virtual void OnClosing() {}
  // Target: whom an egress connection dials; "" for ingress.
  virtual std::string Target() const { return ""; }
};

class IngressPolicy final : public Connection::Policy {
 public:
  explicit IngressPolicy(Connection& connection);
  void Start() override;
  bool OnClientBytes(ChunkQueue& plaintext) override;
  bool SniffedNothing() const override { return first_ != nullptr && first_->bytes.empty(); }
  bool OnUpstreamConnected() override;
  void OnUpstreamUnavailable() override;
  void OnHandshakeDone(Endpoint& side) override;
  void OnHandshakeFailed(Endpoint& side) override;

 private:
  // FirstContact is what only the start of a connection needs. It is released once the
  // first request has been inspected and no refusal can answer it any more (the upstream is
  // connected: requireTLS is refused while sniffing, before any dial), so an idle connection
  // holds none of it.
  struct FirstContact {
    explicit FirstContact(ChunkPool* pool) : sniffed(pool) {}
    // The first bytes, kept until the sniff decides: a copy of the first 16 to classify, and
    // the chunks themselves to hand on whole.
    FirstBytes bytes;
    ChunkQueue sniffed;
    // The first request from the client, copied (bounded) while it is forwarded, for the
    // client's identity and for answering it when the connection is refused.
    FirstRequest request;
  };

  void OnSniffBytes(ChunkQueue& bytes);
  void StartHandshake();
  void Admit(Transport transport);
  void Refuse(CloseReason reason);
  void AnswerAndClose(CloseReason reason, std::string_view answer);
  void MaybeAnswerRefusal();
  void Inspect(const ChunkQueue& plaintext);
  bool Inspected() const { return first_ == nullptr || first_->request.inspected(); }
  void MaybeReleaseFirstContact();

  Connection& c_;
  std::unique_ptr<FirstContact> first_;
};

class EgressPolicy final : public Connection::Policy {
 public:
  EgressPolicy(Connection& connection, const EgressRoute& route);
  void Start() override;
  bool OnClientBytes(ChunkQueue&) override { return true; }
  bool SniffedNothing() const override { return true; }
  bool OnUpstreamConnected() override;
  void OnUpstreamUnavailable() override;
  void OnHandshakeDone(Endpoint& side) override;
  void OnHandshakeFailed(Endpoint& side) override;
  void OnClosing() override;
  std::string Target() const override;

 private:
  bool StartTls();
  void Resolve(const HostPort& target);
  static void OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* result);

  Connection& c_;
  const EgressRoute& route_;
  // Whom we dial and the name their certificate must carry (a DNS name, or an IP literal for
  // transparent egress).
  std::string host_;
  sockaddr_storage address_{};
  uv_getaddrinfo_t resolve_req_{};
  bool resolving_ = false;
};

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_NET_CONNECTION_POLICY_H_
