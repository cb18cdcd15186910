#include "proxy/ctl_main.h"

namespace sidecar::proxy {

int CtlMain(int argc, char** argv) { return 2; }

}  // namespace sidecar::proxy
