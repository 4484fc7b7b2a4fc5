# `cmake --install` and `cpack -G DEB`: binary, systemd unit, default config, man pages,
# logrotate sample, dashboards. Paths that depend on the install prefix (/etc for /usr, the
# binary path inside the unit) are decided at install time in AcmedgeInstallEtc.cmake, so one
# build tree serves both `cmake --install --prefix X` and the /usr prefix cpack uses.
include(GNUInstallDirs)
find_program(AE_GZIP gzip REQUIRED)

# Manual pages and the Debian changelog ship gzip-compressed (-n: reproducible, no timestamp).
set(AE_MAN_OUT ${CMAKE_BINARY_DIR}/man)
set(AE_MAN_GZ ${AE_MAN_OUT}/acmedge.1.gz ${AE_MAN_OUT}/acmedge.json.5.gz ${AE_MAN_OUT}/changelog.Debian.gz)
add_custom_command(OUTPUT ${AE_MAN_GZ}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${AE_MAN_OUT}
  COMMAND ${AE_GZIP} -9nc ${CMAKE_SOURCE_DIR}/docs/man/acmedge.1 > ${AE_MAN_OUT}/acmedge.1.gz
  COMMAND ${AE_GZIP} -9nc ${CMAKE_SOURCE_DIR}/docs/man/acmedge.json.5 > ${AE_MAN_OUT}/acmedge.json.5.gz
  COMMAND ${AE_GZIP} -9nc ${CMAKE_SOURCE_DIR}/contrib/debian/changelog > ${AE_MAN_OUT}/changelog.Debian.gz
  DEPENDS ${CMAKE_SOURCE_DIR}/docs/man/acmedge.1 ${CMAKE_SOURCE_DIR}/docs/man/acmedge.json.5
          ${CMAKE_SOURCE_DIR}/contrib/debian/changelog
  VERBATIM)
add_custom_target(ae_man ALL DEPENDS ${AE_MAN_GZ})

install(TARGETS acmedge RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${AE_MAN_OUT}/acmedge.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${AE_MAN_OUT}/acmedge.json.5.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${AE_MAN_OUT}/changelog.Debian.gz ${CMAKE_SOURCE_DIR}/contrib/debian/copyright
  DESTINATION ${CMAKE_INSTALL_DOCDIR})
foreach(extra grafana/acmedge.json prometheus/alerts.yml)
  if(EXISTS ${CMAKE_SOURCE_DIR}/contrib/${extra})
    get_filename_component(dir ${extra} DIRECTORY)
    install(FILES ${CMAKE_SOURCE_DIR}/contrib/${extra} DESTINATION ${CMAKE_INSTALL_DATADIR}/acmedge/${dir})
  endif()
endforeach()
if(EXISTS ${CMAKE_SOURCE_DIR}/contrib/bash-completion/acmedge)
  install(FILES ${CMAKE_SOURCE_DIR}/contrib/bash-completion/acmedge
    DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
endif()
install(CODE "set(AE_SRC \"${CMAKE_SOURCE_DIR}\")\nset(AE_BUILD \"${CMAKE_BINARY_DIR}\")")
install(SCRIPT ${CMAKE_SOURCE_DIR}/cmake/AcmedgeInstallEtc.cmake)

set(CPACK_PACKAGE_NAME acmedge)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "acmedge maintainers <maintainers@acmedge.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "on-demand ACME edge proxy")
set(CPACK_PACKAGE_DESCRIPTION "acmedge terminates TLS for many domains, obtains their certificates on
demand over ACME (http-01, tls-alpn-01) and renews them, and reverse-proxies
HTTP/1.1 to upstreams chosen by the Host header. Provisioning is visible as
events, Prometheus metrics and a web console on the admin listener.")
set(CPACK_STRIP_FILES ON)
# Absolute destinations (/etc) are only allowed with DESTDIR-style staging.
set(CPACK_SET_DESTDIR ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_SOURCE_DIR}/contrib/debian/conffiles
  ${CMAKE_SOURCE_DIR}/contrib/debian/postinst ${CMAKE_SOURCE_DIR}/contrib/debian/prerm
  ${CMAKE_SOURCE_DIR}/contrib/debian/postrm)
set(CPACK_GENERATOR DEB)
include(CPack)
