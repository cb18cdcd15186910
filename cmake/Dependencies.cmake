# Every dependency comes from a Debian 12 package; nothing is downloaded at build time.

find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBUV REQUIRED IMPORTED_TARGET libuv)
find_package(absl REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(prometheus-cpp REQUIRED)
find_package(GTest REQUIRED)
find_package(Threads REQUIRED)

# BoringSSL as Debian ships it for Android tools (android-libboringssl-dev). Its sonames
# (libssl.so.0, libcrypto.so.0) differ from OpenSSL 3's, and the rpath below makes the
# loader find them, so OpenSSL's libssl.so.3 is never loaded into our processes.
set(BORINGSSL_INCLUDE_DIR /usr/include/android CACHE PATH "BoringSSL headers")
set(BORINGSSL_LIB_DIR /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android CACHE PATH "BoringSSL libraries")
if(NOT EXISTS ${BORINGSSL_INCLUDE_DIR}/openssl/is_boringssl.h)
  message(FATAL_ERROR "BoringSSL headers not found in ${BORINGSSL_INCLUDE_DIR}: apt-get install android-libboringssl-dev")
endif()
foreach(lib crypto ssl)
  add_library(boringssl::${lib} SHARED IMPORTED)
  set_target_properties(boringssl::${lib} PROPERTIES
    IMPORTED_LOCATION ${BORINGSSL_LIB_DIR}/lib${lib}.so
    IMPORTED_NO_SONAME FALSE)
  target_include_directories(boringssl::${lib} SYSTEM INTERFACE ${BORINGSSL_INCLUDE_DIR})
endforeach()
target_link_libraries(boringssl::ssl INTERFACE boringssl::crypto)
set(CMAKE_BUILD_RPATH ${BORINGSSL_LIB_DIR})
set(CMAKE_INSTALL_RPATH ${BORINGSSL_LIB_DIR})
