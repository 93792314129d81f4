# SPDX-License-Identifier: MIT
# Checks the guest ELF against what the host relies on (run by CTest):
# every counter name in counters.h is a function symbol; user functions are
# at user VAs; the #BP entry stub is alone in its page; patch_target and
# patch_neighbor share a page. Usage: cmake -DNM=nm -DELF=... -DCOUNTERS=... -P this
cmake_minimum_required(VERSION 3.20)
execute_process(COMMAND ${NM} -n ${ELF} OUTPUT_VARIABLE syms RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nm failed on ${ELF}")
endif()
file(READ ${COUNTERS} header)
# The list entries: "    X(name)  \" lines of the VMT_*_COUNTERS macros.
string(REGEX MATCHALL "\n    X\\([a-z0-9_]+\\)" entries "${header}")
list(LENGTH entries n)
if(n LESS 10)
  message(FATAL_ERROR "found only ${n} counter names in ${COUNTERS}")
endif()

foreach(e ${entries})
  string(REGEX REPLACE ".*X\\((.*)\\)" "\\1" name "${e}")
  string(REGEX MATCH "([0-9a-f]+) T ${name}\n" m "${syms}")
  if(NOT m)
    message(FATAL_ERROR "no function symbol `${name}` in ${ELF}")
  endif()
  # User functions (lib_*, prog_*) live at 0x400000..0x7fffff, the kernel's at -2 GiB.
  set(addr ${CMAKE_MATCH_1})
  if(name MATCHES "^(lib|prog)_" AND NOT addr MATCHES "^0000000000[4-7]")
    message(FATAL_ERROR "user function ${name} at ${addr}, not at a user VA")
  endif()
endforeach()

# The cmake math is signed 64-bit: compare page numbers of the low 32 bits.
foreach(s vmt_bp_entry patch_target patch_neighbor)
  string(REGEX MATCH "ffffffff([0-9a-f]+) T ${s}\n" m "${syms}")
  if(NOT m)
    message(FATAL_ERROR "no kernel symbol ${s}")
  endif()
  math(EXPR ${s} "0x${CMAKE_MATCH_1} >> 12")
endforeach()
if(NOT patch_target EQUAL patch_neighbor)
  message(FATAL_ERROR "patch_target and patch_neighbor are not in one page")
endif()
# Nothing but vmt_bp_entry may start in its page.
string(REGEX MATCHALL "ffffffff([0-9a-f]+) [Tt] [^\n]+" all "${syms}")
foreach(line ${all})
  string(REGEX MATCH "ffffffff([0-9a-f]+) [Tt] ([^\n]+)" m "${line}")
  math(EXPR page "0x${CMAKE_MATCH_1} >> 12")
  if(page EQUAL vmt_bp_entry AND NOT CMAKE_MATCH_2 STREQUAL "vmt_bp_entry")
    message(FATAL_ERROR "${CMAKE_MATCH_2} shares the #BP entry page")
  endif()
endforeach()
message(STATUS "guest ELF: ${n} instrumented functions found, layout as expected")
