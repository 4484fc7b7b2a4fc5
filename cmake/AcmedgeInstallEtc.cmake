# Install-time part of AcmedgeInstall.cmake: runs with the prefix actually used (cpack: /usr,
# `cmake --install --prefix X`: X). The FHS puts configuration in /etc for the /usr prefix and
# under the prefix otherwise; the unit names the installed binary and configuration.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "/usr")
  set(etc "/etc")
else()
  set(etc "${prefix}/etc")
endif()
set(AE_BIN_FILE "${prefix}/bin/acmedge")
set(AE_CONF_FILE "${etc}/acmedge/acmedge.json")
configure_file("${AE_SRC}/contrib/systemd/acmedge.service.in" "${AE_BUILD}/contrib/acmedge.service" @ONLY)
file(INSTALL "${AE_BUILD}/contrib/acmedge.service" DESTINATION "${prefix}/lib/systemd/system"
  FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(INSTALL "${AE_SRC}/contrib/config/acmedge.json" DESTINATION "${etc}/acmedge"
  FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
file(INSTALL "${AE_SRC}/contrib/logrotate/acmedge" DESTINATION "${etc}/logrotate.d"
  FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
