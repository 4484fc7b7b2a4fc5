# The web console (ui/*) embedded into acmedge_core as C arrays at build time (no network, no
# tools beyond CMake); src/admin/admin_ui.c serves them under /ui.
set(AE_UI_FILES index.html app.css app.js)
set(AE_UI_DEPS "")
foreach(f ${AE_UI_FILES})
  list(APPEND AE_UI_DEPS ${CMAKE_SOURCE_DIR}/ui/${f})
endforeach()
set(AE_UI_GEN ${CMAKE_BINARY_DIR}/generated/admin_ui_assets.c)
string(REPLACE ";" "," AE_UI_FILES_ARG "${AE_UI_FILES}")
add_custom_command(OUTPUT ${AE_UI_GEN}
  COMMAND ${CMAKE_COMMAND} -DUI_DIR=${CMAKE_SOURCE_DIR}/ui -DOUT=${AE_UI_GEN}
          -DHEADER=${CMAKE_SOURCE_DIR}/src/admin/admin_ui.h "-DFILES=${AE_UI_FILES_ARG}"
          -P ${CMAKE_SOURCE_DIR}/cmake/EmbedUi.cmake
  DEPENDS ${AE_UI_DEPS} ${CMAKE_SOURCE_DIR}/cmake/EmbedUi.cmake
  COMMENT "Embedding the web console (ui/) into the binary"
  VERBATIM)
target_sources(acmedge_core PRIVATE ${AE_UI_GEN})
