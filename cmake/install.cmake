# SPDX-License-Identifier: MIT
# Installation: libraries, headers, pkg-config file and CMake package config.
include(CMakePackageConfigHelpers)

install(TARGETS vmitap vmitap_static EXPORT vmitapTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/vmitap DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_BINARY_DIR}/include/vmitap/version.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vmitap)

install(EXPORT vmitapTargets NAMESPACE vmitap:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/vmitap)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/vmitapConfig.cmake.in
  ${PROJECT_BINARY_DIR}/vmitapConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/vmitap)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/vmitapConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/vmitapConfig.cmake ${PROJECT_BINARY_DIR}/vmitapConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/vmitap)

# The .pc file names its directories relative to its own location
# (${pcfiledir}), because the prefix is only known at install time
# (cmake --install --prefix). Absolute install dirs are kept as given.
file(RELATIVE_PATH VMITAP_PC_PREFIX_FROM_PCDIR /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
string(REGEX REPLACE "/$" "" VMITAP_PC_PREFIX_FROM_PCDIR "${VMITAP_PC_PREFIX_FROM_PCDIR}")
foreach(kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${kind}}")
    set(VMITAP_PC_${kind} "${CMAKE_INSTALL_${kind}}")
  else()
    set(VMITAP_PC_${kind} "\${prefix}/${CMAKE_INSTALL_${kind}}")
  endif()
endforeach()
configure_file(${PROJECT_SOURCE_DIR}/cmake/vmitap.pc.in ${PROJECT_BINARY_DIR}/vmitap.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/vmitap.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

install(FILES ${PROJECT_SOURCE_DIR}/LICENSE ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/CHANGELOG.md
  ${PROJECT_SOURCE_DIR}/docs/api.md ${PROJECT_SOURCE_DIR}/docs/vmitap-jsonl.schema.json
  DESTINATION ${CMAKE_INSTALL_DOCDIR})
