# Install rules and the Debian package (README.md "Production").
#
#   cmake --install build --prefix P      the files below under P
#   deploy/debian/build-deb.sh [DIR]      the .deb (and its -dbgsym .ddeb) with CPack
#
# With CMAKE_INSTALL_PREFIX=/usr (how the package is built) GNUInstallDirs puts the
# configuration under /etc/tls-sidecar and the units under /lib/systemd/system; with any
# other prefix everything stays under it (P/etc/tls-sidecar, P/lib/systemd/system).

include(GNUInstallDirs)

# Whoever builds the package for distribution names themselves here (lintian reports the
# placeholder as bogus-mail-host).
set(SIDECAR_PACKAGE_MAINTAINER "tls-sidecar maintainers <tls-sidecar@localhost>" CACHE STRING
    "Maintainer: of the Debian package")

if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(SIDECAR_ETC_DIR /etc/tls-sidecar)
  set(SIDECAR_UNIT_DIR /lib/systemd/system)
else()
  set(SIDECAR_ETC_DIR ${CMAKE_INSTALL_SYSCONFDIR}/tls-sidecar)
  set(SIDECAR_UNIT_DIR lib/systemd/system)
endif()
set(SIDECAR_SHARE_DIR ${CMAKE_INSTALL_DATADIR}/tls-sidecar)
set(SIDECAR_DOC_DIR ${CMAKE_INSTALL_DATADIR}/doc/tls-sidecar)

install(TARGETS tls-sidecar RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT sidecar)
# 0644 in the package; postinst makes it 0640 root:tls-sidecar on the first install.
install(FILES deploy/systemd/tls-sidecar.toml DESTINATION ${SIDECAR_ETC_DIR} COMPONENT sidecar)
install(FILES deploy/systemd/tls-sidecar.service deploy/systemd/tls-sidecar@.service
        DESTINATION ${SIDECAR_UNIT_DIR} COMPONENT sidecar)
install(DIRECTORY deploy/grafana deploy/prometheus deploy/kubernetes
        DESTINATION ${SIDECAR_SHARE_DIR} COMPONENT sidecar)
install(PROGRAMS deploy/egress-iptables.sh deploy/systemd/tls-sidecar-upgrade
        DESTINATION ${SIDECAR_SHARE_DIR} COMPONENT sidecar)
install(FILES README.md deploy/ROLLING-UPGRADE.md deploy/debian/copyright
        DESTINATION ${SIDECAR_DOC_DIR} COMPONENT sidecar)

# A native package (no Debian revision): its changelog is changelog.gz. Debian wants it and man pages compressed, reproducibly (gzip -n: no name or
# time in the header).
find_program(SIDECAR_GZIP gzip REQUIRED)
configure_file(deploy/debian/changelog.in ${PROJECT_BINARY_DIR}/packaging/changelog @ONLY)
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/packaging/changelog.gz
  COMMAND ${SIDECAR_GZIP} -9nf -k ${PROJECT_BINARY_DIR}/packaging/changelog
  DEPENDS ${PROJECT_BINARY_DIR}/packaging/changelog)

# tls-sidecar(8), made from --help by help2man (Debian's help2man) with the sections --help
# does not have (files, exit status, signals) from deploy/debian/tls-sidecar.h2m. Without
# help2man the page is not built, and the package script refuses to build a package.
find_program(SIDECAR_HELP2MAN help2man)
set(SIDECAR_MAN_PAGE ${PROJECT_BINARY_DIR}/packaging/tls-sidecar.8)
if(SIDECAR_HELP2MAN)
  add_custom_command(OUTPUT ${SIDECAR_MAN_PAGE}.gz
    COMMAND ${SIDECAR_HELP2MAN} --no-info --section=8
            --name "TLS-terminating sidecar proxy for MongoDB"
            --include ${PROJECT_SOURCE_DIR}/deploy/debian/tls-sidecar.h2m
            --output ${SIDECAR_MAN_PAGE} $<TARGET_FILE:tls-sidecar>
    COMMAND ${SIDECAR_GZIP} -9nf ${SIDECAR_MAN_PAGE}
    DEPENDS tls-sidecar ${PROJECT_SOURCE_DIR}/deploy/debian/tls-sidecar.h2m
    COMMENT "Generating tls-sidecar(8) from --help")
  add_custom_target(tls-sidecar-man ALL
    DEPENDS ${SIDECAR_MAN_PAGE}.gz ${PROJECT_BINARY_DIR}/packaging/changelog.gz)
  install(FILES ${SIDECAR_MAN_PAGE}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8 COMPONENT sidecar)
else()
  add_custom_target(tls-sidecar-man ALL
    DEPENDS ${PROJECT_BINARY_DIR}/packaging/changelog.gz)
endif()
install(FILES ${PROJECT_BINARY_DIR}/packaging/changelog.gz DESTINATION ${SIDECAR_DOC_DIR}
        COMPONENT sidecar)

# --- CPack: tls-sidecar_<version>_amd64.deb ------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME tls-sidecar)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${SIDECAR_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "TLS-terminating sidecar proxy for MongoDB")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
  "tls-sidecar runs beside an unmodified mongod and owns the node's public\n"
  "MongoDB port. It tells TLS from plaintext by the first bytes a client\n"
  "sends, terminates TLS (or passes plaintext) according to its mode, and\n"
  "forwards plaintext to the local mongod, so that a cluster can follow\n"
  "MongoDB's rolling upgrade to TLS without restarting mongod.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Shared libraries (libuv, BoringSSL from android-libboringssl, Abseil, prometheus-cpp,
# civetweb, libstdc++) are found by dpkg-shlibdeps; adduser is for postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles ${PROJECT_SOURCE_DIR}/deploy/debian/postinst
  ${PROJECT_SOURCE_DIR}/deploy/debian/prerm ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# One component, one package: tls-sidecar, plus tls-sidecar-dbgsym with the debug symbols
# CPack splits off the (then stripped) binary, found by its build id.
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL sidecar)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_DEBIAN_DEBUGINFO_PACKAGE ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)
include(CPack)
