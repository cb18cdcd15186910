// HelpText is what `tls-sidecar --help` prints: every flag and every key of the file with its
// default, written from the settings table (settings.h) so that none can be left out.
#ifndef SIDECAR_PROXY_CONFIG_HELP_TEXT_H_
#define SIDECAR_PROXY_CONFIG_HELP_TEXT_H_

#include <string>

namespace sidecar::proxy {

// HelpText is what --help prints: every flag and key, with defaults.
std::string HelpText();

}  // namespace sidecar::proxy

#endif  // SIDECAR_PROXY_CONFIG_HELP_TEXT_H_
