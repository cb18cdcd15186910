// Fuzzes ParseOcspResponse and VerifyOcspResponse: any input either fails to parse or
// parses into fields that lie within it; a parsed response then goes through the whole
// verification (CertID matching, responder lookup, delegation checks, signature, times)
// against a fixed certificate and issuer, which must end in a verdict or an error, never a
// crash. A random input cannot carry a valid signature, so a verdict here means the
// verification accepted something unsigned: abort.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "certs/ocsp_verify.h"
#include "certs/throwaway_pki.h"

namespace {

using namespace sidecar::certs;

struct Pki {
  GeneratedCertificate issuer;
  GeneratedCertificate leaf;
};

const Pki& Fixed() {
  static const Pki* pki = [] {
    CertificateOptions ca;
    ca.is_ca = true;
    ca.common_name = "Fuzz CA";
    auto* made = new Pki{*MakeCertificate(ca), {}};
    CertificateOptions leaf;
    leaf.issuer = &made->issuer;
    leaf.serial = 0x1001;  // the serial of the corpus's fixtures
    made->leaf = *MakeCertificate(leaf);
    return made;
  }();
  return *pki;
}

void Check(bool condition) {
  if (!condition) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view der(reinterpret_cast<const char*>(data), size);
  auto response = ParseOcspResponse(der);
  if (!response.ok()) {
    return 0;
  }
  Check(response->tbs_response_data.size() < size);
  Check(response->signature.size() < size);
  Check(response->nonce.size() < size);
  for (const auto& single : response->responses) {
    Check(single.cert_id.serial.size() < size);
  }
  const Pki& pki = Fixed();
  OcspVerifyOptions options;
  options.now = response->produced_at;
  auto verdict = VerifyOcspResponse(*response, pki.leaf.cert.get(), pki.issuer.cert.get(),
                                    options);
  Check(!verdict.ok());
  return 0;
}
